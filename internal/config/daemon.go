package config

// The [daemon] table: the Go garbage collector of vfolderd.
//
//	[daemon]
//	gogc = 100              # GC target percentage (as GOGC); default 100
//	memory_limit = "none"   # soft memory limit (as GOMEMLIMIT): a size
//	                        # such as "4G", or "none" (default)
//
// The daemon keeps a node per inode the kernel knows (millions after a
// find over a large folder), so its heap follows the kernel's inode cache;
// see "Tuning the daemon" in docs/operations.md for the measured
// trade-off. The environment variables GOGC and GOMEMLIMIT, read by the Go
// runtime itself, win over both keys (and their flags) when set.

import "github.com/vfolder/vfolder/internal/units"

// Bounds of the [daemon] keys.
const (
	// DefaultGOGC is the GC target percentage vfolderd runs with.
	DefaultGOGC = 100
	// MinGOGC and MaxGOGC bound gogc: below 10 the collector runs almost
	// continuously; above 10000 the heap may grow a hundredfold between
	// collections.
	MinGOGC = 10
	MaxGOGC = 10000
	// MinMemoryLimit is the smallest memory_limit accepted: below it the
	// collector would run continuously on a daemon that merely started.
	MinMemoryLimit = 64 << 20
)

// Daemon is the [daemon] table.
type Daemon struct {
	// GOGC is the GC target percentage (runtime/debug.SetGCPercent).
	GOGC int
	// MemoryLimit is the soft memory limit in bytes
	// (runtime/debug.SetMemoryLimit); 0 means none.
	MemoryLimit int64
}

type fileDaemon struct {
	GOGC        *int  `toml:"gogc"`
	MemoryLimit *size `toml:"memory_limit"`
}

func (c *Config) mergeDaemon(f *fileDaemon) {
	if f == nil {
		return
	}
	setIf(&c.Daemon.GOGC, f.GOGC)
	if f.MemoryLimit != nil {
		c.Daemon.MemoryLimit = int64(*f.MemoryLimit)
	}
}

// ParseMemoryLimit parses a memory_limit value: a size ("4G", "512M", a
// byte count) or "none"/"unlimited" (0).
func ParseMemoryLimit(s string) (int64, error) { return units.ParseLimit(s) }

func (c *Config) validateDaemon(add func(field, format string, a ...any)) {
	if g := c.Daemon.GOGC; g < MinGOGC || g > MaxGOGC {
		add("daemon.gogc", "%d is out of range %d..%d", g, MinGOGC, MaxGOGC)
	}
	if m := c.Daemon.MemoryLimit; m != 0 && m < MinMemoryLimit {
		add("daemon.memory_limit", "%d bytes is below the smallest limit, %s (or \"none\")", m, units.FormatSize(MinMemoryLimit))
	}
}
