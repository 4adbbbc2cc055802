package mountd

import (
	"errors"
	"path"
	"strings"
	"testing"

	"github.com/vfolder/vfolder/meta"
)

func TestMountdResolveTarget(t *testing.T) {
	ok := []struct{ name, target, want string }{
		{"data", "", "/home/work/data"},
		{".local", "", "/home/work/.local"},
		{".linuxbrew", "", "/home/linuxbrew/.linuxbrew"},
		{"data", "x", "/home/work/x"},
		{"data", "x/y/", "/home/work/x/y"},
		{"data", "./x//y/../z", "/home/work/x/z"},
		{"data", "/workspace", "/workspace"},
		{"data", "/workspace/", "/workspace"},
		{"data", "/data", "/data"},
		{"data", "/home/work/x", "/home/work/x"},
		{"data", "/home/linuxbrew/.linuxbrew", "/home/linuxbrew/.linuxbrew"},
		{"data", "/tmp/x", "/tmp/x"},
		{"data", "/mnt/datasets", "/mnt/datasets"},
		{"data", "/library", "/library"},
		{"data", "/usrdata", "/usrdata"},
		{"data", "/a/../workspace", "/workspace"},
		{"", "/workspace", "/workspace"}, // name unused with a target
	}
	for _, c := range ok {
		got, err := ResolveTarget(c.name, c.target)
		if err != nil || got != c.want {
			t.Errorf("ResolveTarget(%q, %q) = %q, %v; want %q", c.name, c.target, got, err, c.want)
		}
	}
	system := []string{
		"/", "/bin", "/boot", "/dev", "/etc", "/lib", "/lib64", "/proc", "/root",
		"/run", "/sbin", "/sys", "/usr", "/var", "/tmp", "/home", "/home/work",
		"/home/work/", "/proc/1", "/sys/fs/cgroup", "/dev/shm", "/etc/passwd",
		"/usr/local/lib", "/bin/x", "/sbin/x", "/lib/x", "/lib32/x", "/lib64/x",
		"/boot/efi", "/opt/kernel", "/opt/backend.ai/x", "/home/config", "//etc",
		"/x/../etc/x", "/home/work/..",
	}
	for _, s := range system {
		if got, err := ResolveTarget("data", s); !errors.Is(err, ErrSystemPath) || !errors.Is(err, ErrInvalid) {
			t.Errorf("ResolveTarget(data, %q) = %q, %v; want ErrSystemPath", s, got, err)
		}
	}
	invalid := []struct{ name, target string }{
		{"data", ".."},
		{"data", "../x"},
		{"data", "x/../../y"},
		{"data", "."},       // /home/work itself
		{"data", "a/.."},    // /home/work itself
		{"", ""},            // no name
		{"a/b", ""},         // not a folder name
		{"..", ""},          // not a folder name
		{".bashrc", ""},     // reserved name
		{"data", "/x\x00y"}, // NUL
		{"data", "x\ny"},    // control character
		{"data", "/\xff"},   // not UTF-8
		{"data", "/" + strings.Repeat("a", 256)},
		{"data", strings.Repeat("a/", 2100)},
	}
	for _, c := range invalid {
		got, err := ResolveTarget(c.name, c.target)
		if !errors.Is(err, ErrInvalid) {
			t.Errorf("ResolveTarget(%q, %q) = %q, %v; want ErrInvalid", c.name, c.target, got, err)
		} else if n := strings.Count(err.Error(), meta.ErrInvalid.Error()); n != 1 {
			t.Errorf("ResolveTarget(%q, %q): %q says %q %d times; want once", c.name, c.target, err, meta.ErrInvalid, n)
		}
	}
}

func TestMountdAutomountTarget(t *testing.T) {
	if got, err := AutomountTarget(".linuxbrew"); err != nil || got != LinuxbrewTarget {
		t.Errorf("AutomountTarget(.linuxbrew) = %q, %v", got, err)
	}
	if got, err := AutomountTarget(".local"); err != nil || got != "/home/work/.local" {
		t.Errorf("AutomountTarget(.local) = %q, %v", got, err)
	}
	if _, err := AutomountTarget("data"); !errors.Is(err, ErrInvalid) {
		t.Errorf("AutomountTarget(data) = %v; want ErrInvalid", err)
	}
	if _, err := AutomountTarget(".ssh"); !errors.Is(err, ErrInvalid) {
		t.Errorf("AutomountTarget(.ssh) = %v; want ErrInvalid (reserved)", err)
	}
}

func TestMountdCheckOverlap(t *testing.T) {
	r := func(id, sub, tgt string) Request { return Request{FolderID: id, Subpath: sub, Target: tgt} }
	good := [][]Request{
		nil,
		{r("f1", "", "/home/work/a")},
		{r("f1", "", "/home/work/a"), r("f2", "", "/home/work/b")},
		{r("f1", "x", "/home/work/a"), r("f1", "y", "/home/work/b")},
		{r("f1", "x", "/home/work/a"), r("f1", "xy", "/home/work/ab")},
		{r("f1", "", "/a/b"), r("f2", "", "/a-c"), r("f3", "", "/a/c")},
		{r("f1", "", "/home/work/a"), r("f11", "", "/home/work/a1")},
		{r("a/b", "", "/x"), r("a", "b", "/y")}, // ids are opaque, not paths
	}
	for i, g := range good {
		if err := CheckOverlap(g); err != nil {
			t.Errorf("good %d: %v", i, err)
		}
	}
	bad := [][]Request{
		{r("f1", "", "/home/work/a"), r("f2", "", "/home/work/a")},
		{r("f1", "", "/home/work/a"), r("f2", "", "/home/work/a/b")},
		{r("f1", "", "/a"), r("f2", "", "/a-c"), r("f3", "", "/a/c")},
		{r("f1", "", "/x"), r("f1", "", "/y")},
		{r("f1", "", "/x"), r("f1", "sub", "/y")},
		{r("f1", "a", "/x"), r("f1", "a/b/c", "/y")},
		{r("f1", "a/", "/x"), r("f1", "./a", "/y")},
		{r("f1", "a", "/x"), r("f2", "", "/z"), r("f1", "a/b", "/y")},
	}
	for i, b := range bad {
		if err := CheckOverlap(b); !errors.Is(err, ErrOverlap) || !errors.Is(err, ErrInvalid) {
			t.Errorf("bad %d: %v; want ErrOverlap", i, err)
		}
	}
	invalid := [][]Request{
		{r("", "", "/x")},
		{r("f1", "/abs", "/x")},
		{r("f1", "../up", "/x")},
		{r("f1", "a/../../up", "/x")},
		{r("f1", "", "rel")},
		{r("f1", "", "/x/")},
	}
	for i, b := range invalid {
		if err := CheckOverlap(b); !errors.Is(err, ErrInvalid) || errors.Is(err, ErrOverlap) {
			t.Errorf("invalid %d: %v; want ErrInvalid", i, err)
		}
	}
}

// checkResolved is the property every accepted target has.
func checkResolved(t *testing.T, name, target, got string) {
	t.Helper()
	if !path.IsAbs(got) || path.Clean(got) != got {
		t.Fatalf("ResolveTarget(%q, %q) = %q: not clean and absolute", name, target, got)
	}
	if IsSystemPath(got) {
		t.Fatalf("ResolveTarget(%q, %q) = %q: a system path", name, target, got)
	}
	for _, c := range strings.Split(got[1:], "/") {
		if c == ".." || c == "." || c == "" {
			t.Fatalf("ResolveTarget(%q, %q) = %q: bad component %q", name, target, got, c)
		}
	}
	if strings.ContainsRune(got, 0) {
		t.Fatalf("ResolveTarget(%q, %q) = %q: NUL", name, target, got)
	}
	if !strings.HasPrefix(target, "/") && target != "" && !strings.HasPrefix(got, WorkDir+"/") {
		t.Fatalf("ResolveTarget(%q, %q) = %q: relative target left %s", name, target, got, WorkDir)
	}
}

func FuzzMountdResolveTarget(f *testing.F) {
	for _, s := range [][2]string{
		{"data", ""}, {"data", "x"}, {"data", "/workspace"}, {"data", "../x"},
		{".linuxbrew", ""}, {"d", "/etc/../home/work/x"}, {"d", "/lib64x"},
		{"d", "a/../.."}, {"d", "//usr"}, {"d", "/home/work/./x/"}, {"d", "\x00"},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, name, target string) {
		got, err := ResolveTarget(name, target)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error not ErrInvalid: %v", err)
			}
			return
		}
		checkResolved(t, name, target, got)
	})
}

func FuzzMountdCheckOverlap(f *testing.F) {
	f.Add("f1", "a", "/x", "f1", "a/b", "/y")
	f.Add("f1", "", "/x", "f2", "", "/x/y")
	f.Add("f1", "..", "/x", "f2", "", "/y")
	f.Fuzz(func(t *testing.T, id1, sub1, t1, id2, sub2, t2 string) {
		reqs := []Request{{id1, sub1, t1}, {id2, sub2, t2}}
		err := CheckOverlap(reqs)
		if err != nil && !errors.Is(err, ErrInvalid) {
			t.Fatalf("error not ErrInvalid: %v", err)
		}
		if err != nil {
			return
		}
		// Accepted: targets and sources must not be nested either way.
		if under(t1, t2) || under(t2, t1) {
			t.Fatalf("accepted nested targets %q %q", t1, t2)
		}
		s1, _ := cleanSubpath(sub1)
		s2, _ := cleanSubpath(sub2)
		if id1 == id2 && (under("/"+s1, "/"+s2) || under("/"+s2, "/"+s1) || s1 == "" || s2 == "") {
			t.Fatalf("accepted nested sources %q:%q %q:%q", id1, sub1, id2, sub2)
		}
	})
}

func TestMountdValidateIDs(t *testing.T) {
	for _, s := range []string{"s1", "0123456789abcdef0123456789abcdef", "a.b-c_d", strings.Repeat("a", 128)} {
		if err := ValidateSessionID(s); err != nil {
			t.Errorf("ValidateSessionID(%q) = %v", s, err)
		}
	}
	for _, s := range []string{"", ".", "..", ".x", "a/b", "a b", "é", strings.Repeat("a", 129), "a\x00"} {
		if err := ValidateSessionID(s); !errors.Is(err, ErrInvalid) {
			t.Errorf("ValidateSessionID(%q) = %v; want ErrInvalid", s, err)
		}
	}
	for _, s := range []string{"data", ".local", "my data", "données", "...", strings.Repeat("a", 255)} {
		if err := ValidateKey(s); err != nil {
			t.Errorf("ValidateKey(%q) = %v", s, err)
		}
	}
	for _, s := range []string{"", ".", "..", "a/b", "/", "a\x00", "a\nb", "\xff", strings.Repeat("a", 256)} {
		if err := ValidateKey(s); !errors.Is(err, ErrInvalid) {
			t.Errorf("ValidateKey(%q) = %v; want ErrInvalid", s, err)
		}
	}
}

func FuzzMountdValidateKey(f *testing.F) {
	for _, s := range []string{"data", ".", "..", "a/b", "x\x00", "données", "\xff"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if ValidateKey(s) == nil {
			if s == "." || s == ".." || strings.ContainsAny(s, "/\x00") || len(s) == 0 || len(s) > MaxKeyLen {
				t.Fatalf("ValidateKey accepted %q", s)
			}
			if path.Base("/x/"+s) != s {
				t.Fatalf("key %q is not one path component", s)
			}
		}
		if ValidateSessionID(s) == nil {
			if strings.HasPrefix(s, ".") || strings.ContainsAny(s, "/\x00 ") || len(s) == 0 {
				t.Fatalf("ValidateSessionID accepted %q", s)
			}
		}
	})
}
