package mountd

import (
	"errors"
	"strings"
	"testing"
)

const sampleMountInfo = `22 27 0:21 / /proc rw,relatime - proc proc rw
27 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
100 27 254:0 /tmp/src /run/vf/s1/my\040data ro,nosuid,nodev,relatime shared:7 master:3 - ext4 /dev/vda rw
101 100 0:50 / /run/vf/s1/my\040data rw - tmpfs vfolder-placeholder ro,size=4k
102 101 0:51 / /run/vf/s1/my\040data rw - fuse.vfolder vfolder rw
`

func TestMountdParseMountInfo(t *testing.T) {
	mi, err := ParseMountInfo(strings.NewReader(sampleMountInfo))
	if err != nil {
		t.Fatal(err)
	}
	if len(mi) != 5 {
		t.Fatalf("got %d entries", len(mi))
	}
	m := mi[2]
	if m.ID != 100 || m.Parent != 27 || m.Dev != "254:0" || m.Root != "/tmp/src" || m.Point != "/run/vf/s1/my data" ||
		m.FSType != "ext4" || m.Source != "/dev/vda" || !m.ReadOnly() || !m.Shared() || !m.Slave() {
		t.Fatalf("entry: %+v", m)
	}
	if mi[0].ReadOnly() || mi[0].Shared() || mi[0].Slave() || len(mi[0].Optional) != 0 {
		t.Fatalf("entry 0: %+v", mi[0])
	}
	st := stackAt(mi, "/run/vf/s1/my data")
	if len(st) != 3 || st[0].ID != 100 || st[1].ID != 101 || st[2].ID != 102 {
		t.Fatalf("stack: %+v", st)
	}
	if !isPlaceholder(&st[1]) || isPlaceholder(&st[2]) {
		t.Fatal("placeholder detection")
	}
	if stackAt(mi, "/nope") != nil {
		t.Fatal("stack at an unmounted path")
	}
	for _, bad := range []string{"", "1 2 3", "x 1 0:1 / / rw - a b c", "1 x 0:1 / / rw - a b c", "1 2 0:1 / / rw a b c", "1 2 0:1 / / rw -"} {
		if _, err := ParseMountInfoLine(bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("ParseMountInfoLine(%q) = %v; want ErrInvalid", bad, err)
		}
	}
}

func TestMountdMountInfoEscape(t *testing.T) {
	for _, s := range []string{"", "plain", "a b", "tab\there", "nl\nx", `back\slash`, `\040 literal`, "\\", "\\12", "\\777"} {
		if got := unescapeMountInfo(escapeMountInfo(s)); got != s {
			t.Errorf("round trip %q -> %q -> %q", s, escapeMountInfo(s), got)
		}
	}
	if got := unescapeMountInfo(`a\777b\12`); got != `a\777b\12` {
		t.Errorf("invalid escapes changed: %q", got)
	}
}

func FuzzMountdParseMountInfoLine(f *testing.F) {
	for _, l := range strings.Split(strings.TrimSpace(sampleMountInfo), "\n") {
		f.Add(l)
	}
	f.Add("1 2 3:4 / / rw - - - -")
	f.Add(`1 2 3:4 \ \1 rw - t s o`)
	f.Fuzz(func(t *testing.T, line string) {
		m, err := ParseMountInfoLine(line)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error not ErrInvalid: %v", err)
			}
			return
		}
		// Round trip of the paths through the kernel's escaping.
		if got := unescapeMountInfo(escapeMountInfo(m.Point)); got != m.Point {
			t.Fatalf("escape round trip %q -> %q", m.Point, got)
		}
	})
}

func FuzzMountdUnescape(f *testing.F) {
	f.Add("a b")
	f.Add(`\134\040`)
	f.Fuzz(func(t *testing.T, s string) {
		if got := unescapeMountInfo(escapeMountInfo(s)); got != s {
			t.Fatalf("round trip %q -> %q", s, got)
		}
	})
}
