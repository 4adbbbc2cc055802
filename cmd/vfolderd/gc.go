package main

import (
	"fmt"
	"os"
	"runtime/debug"
	"strconv"

	"github.com/rs/zerolog"
	"github.com/urfave/cli/v2"

	"github.com/vfolder/vfolder/internal/config"
	"github.com/vfolder/vfolder/internal/units"
)

// gcFlags are the flags of the [daemon] table: the Go garbage collector.
func gcFlags(env func(string) []string) []cli.Flag {
	return []cli.Flag{
		&cli.IntFlag{Name: "gogc", EnvVars: env("GOGC"), Category: "memory", Usage: "the garbage collector's target `PERCENT` of heap growth between collections ([daemon] gogc; the GOGC environment variable wins)", DefaultText: strconv.Itoa(config.DefaultGOGC)},
		&cli.StringFlag{Name: "memory-limit", EnvVars: env("MEMORY_LIMIT"), Category: "memory", Usage: "soft memory limit of the daemon, a `SIZE` such as 4G, or none ([daemon] memory_limit; the GOMEMLIMIT environment variable wins)", DefaultText: "none"},
	}
}

// gcConfig applies the [daemon] flags over the file.
func gcConfig(c *cli.Context, cfg *config.Config) error {
	if c.IsSet("gogc") {
		cfg.Daemon.GOGC = c.Int("gogc")
	}
	if c.IsSet("memory-limit") {
		n, err := config.ParseMemoryLimit(c.String("memory-limit"))
		if err != nil {
			return fmt.Errorf("%w: --memory-limit: %v", config.ErrInvalid, err)
		}
		cfg.Daemon.MemoryLimit = n
	}
	return nil
}

// applyGC sets the garbage collector's target percentage and soft memory
// limit from d, except for what the GOGC and GOMEMLIMIT environment
// variables set: the Go runtime has read those already, and they win.
func applyGC(d config.Daemon, log zerolog.Logger) {
	ev := log.Info()
	if v := os.Getenv("GOGC"); v != "" {
		ev = ev.Str("gogc", v+" (GOGC)")
	} else {
		debug.SetGCPercent(d.GOGC)
		ev = ev.Int("gogc", d.GOGC)
	}
	if v := os.Getenv("GOMEMLIMIT"); v != "" {
		ev = ev.Str("memory_limit", v+" (GOMEMLIMIT)")
	} else if d.MemoryLimit > 0 {
		debug.SetMemoryLimit(d.MemoryLimit)
		ev = ev.Str("memory_limit", units.FormatSize(d.MemoryLimit))
	} else {
		ev = ev.Str("memory_limit", "none")
	}
	ev.Msg("garbage collector")
}
