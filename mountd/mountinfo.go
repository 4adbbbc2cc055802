package mountd

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// MountInfo is one line of /proc/<pid>/mountinfo.
type MountInfo struct {
	ID, Parent int
	// Dev is the st_dev of the mount's files, "major:minor" (for a FUSE
	// mount, minor is its connection number in /sys/fs/fuse/connections).
	Dev string
	// Root is the path inside its filesystem that is this mount's root.
	Root string
	// Point is where it is mounted (in the reader's root).
	Point string
	// Options are the per-mount options ("rw"/"ro", "nosuid", ...).
	Options []string
	// Optional are the optional fields ("shared:N", "master:N", ...).
	Optional []string
	FSType   string
	Source   string
}

// ReadOnly reports whether the mount itself is read-only.
func (m *MountInfo) ReadOnly() bool { return hasOpt(m.Options, "ro") }

// Shared reports whether the mount is in a peer group.
func (m *MountInfo) Shared() bool { return hasPrefix(m.Optional, "shared:") }

// Slave reports whether the mount receives propagation from a master.
func (m *MountInfo) Slave() bool { return hasPrefix(m.Optional, "master:") }

func hasOpt(opts []string, o string) bool {
	for _, x := range opts {
		if x == o {
			return true
		}
	}
	return false
}

func hasPrefix(opts []string, p string) bool {
	for _, x := range opts {
		if strings.HasPrefix(x, p) {
			return true
		}
	}
	return false
}

// ReadMountInfo parses /proc/<pid>/mountinfo; pid 0 means the calling
// thread (/proc/thread-self: mount namespaces are per thread, and
// /proc/self shows the main thread's).
func ReadMountInfo(pid int) ([]MountInfo, error) {
	name := "/proc/thread-self/mountinfo"
	if pid != 0 {
		name = "/proc/" + strconv.Itoa(pid) + "/mountinfo"
	}
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return ParseMountInfo(f)
}

// ParseMountInfo parses mountinfo text (see proc(5)).
func ParseMountInfo(r io.Reader) ([]MountInfo, error) {
	var out []MountInfo
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		if len(sc.Bytes()) == 0 {
			continue
		}
		m, err := ParseMountInfoLine(sc.Text())
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	return out, sc.Err()
}

// ParseMountInfoLine parses one mountinfo line:
//
//	36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue
func ParseMountInfoLine(line string) (MountInfo, error) {
	var m MountInfo
	f := strings.Split(line, " ")
	sep := -1
	for i := 6; i < len(f); i++ {
		if f[i] == "-" {
			sep = i
			break
		}
	}
	if len(f) < 7 || sep < 0 || sep+2 >= len(f) {
		return m, fmt.Errorf("%w: mountinfo line %q: too few fields", ErrInvalid, line)
	}
	var err error
	if m.ID, err = strconv.Atoi(f[0]); err != nil {
		return m, fmt.Errorf("%w: mountinfo line %q: bad mount id", ErrInvalid, line)
	}
	if m.Parent, err = strconv.Atoi(f[1]); err != nil {
		return m, fmt.Errorf("%w: mountinfo line %q: bad parent id", ErrInvalid, line)
	}
	m.Dev = f[2]
	m.Root = unescapeMountInfo(f[3])
	m.Point = unescapeMountInfo(f[4])
	m.Options = strings.Split(f[5], ",")
	if sep > 6 {
		m.Optional = f[6:sep]
	}
	m.FSType = unescapeMountInfo(f[sep+1])
	m.Source = unescapeMountInfo(f[sep+2])
	return m, nil
}

// unescapeMountInfo undoes the kernel's octal escapes (\040 for space,
// \011, \012, \134); anything else is kept as it is.
func unescapeMountInfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) && isOct(s[i+1]) && isOct(s[i+2]) && isOct(s[i+3]) {
			v := (s[i+1]-'0')*64 + (s[i+2]-'0')*8 + (s[i+3] - '0')
			if s[i+1] <= '3' {
				b.WriteByte(v)
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func isOct(c byte) bool { return c >= '0' && c <= '7' }

// escapeMountInfo is what the kernel does to paths in mountinfo.
func escapeMountInfo(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case ' ', '\t', '\n', '\\':
			fmt.Fprintf(&b, `\%03o`, c)
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// stackAt returns the mounts stacked at point, bottom first: the first
// one's parent is mounted elsewhere, each next one is a child of the one
// before it.
func stackAt(mounts []MountInfo, point string) []MountInfo {
	var at []MountInfo
	for _, m := range mounts {
		if m.Point == point {
			at = append(at, m)
		}
	}
	if len(at) == 0 {
		return nil
	}
	ids := make(map[int]bool, len(at))
	for _, m := range at {
		ids[m.ID] = true
	}
	var out []MountInfo
	var cur *MountInfo
	for i := range at {
		if !ids[at[i].Parent] {
			cur = &at[i]
			break
		}
	}
	for cur != nil && len(out) < len(at) {
		out = append(out, *cur)
		var next *MountInfo
		for i := range at {
			if at[i].Parent == cur.ID {
				next = &at[i]
				break
			}
		}
		cur = next
	}
	return out
}
