package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vfolder/vfolder/meta"
)

func TestParseDefaultsAndFile(t *testing.T) {
	vol := t.TempDir()
	c, err := Parse(`
state_dir = "/var/lib/vf-test"
storage_uid = 2000
admin_group = 0
default_scope_limit = "10G"
auto_create_scopes = false

[volumes.nfs1]
path = "` + vol + `"
rw_can_delete = false
`)
	if err != nil {
		t.Fatal(err)
	}
	v := c.Volumes["nfs1"]
	if v.Path != vol || v.RWCanDelete || !v.MountAllowed || !v.CloneAllowed || v.Chown != meta.ChownIgnore {
		t.Errorf("volume = %+v; want rw_can_delete false, the switches left true, chown ignore", v)
	}
	if c.StateDir != "/var/lib/vf-test" || c.StorageUID != 2000 || c.StorageGID != DefaultStorageID {
		t.Errorf("state_dir/storage ids = %q %d %d", c.StateDir, c.StorageUID, c.StorageGID)
	}
	if c.ViewUID != DefaultViewID || c.ViewGID != DefaultViewID || c.MountPoint != DefaultMountPoint || c.LogLevel != "warn" {
		t.Errorf("defaults not kept: %+v", c)
	}
	if c.AutoCreateScopes || c.DefaultScopeLimit != 10<<30 {
		t.Errorf("auto_create_scopes=%v default_scope_limit=%d", c.AutoCreateScopes, c.DefaultScopeLimit)
	}
	if gid, err := c.AdminGID(); err != nil || gid != 0 {
		t.Errorf("AdminGID = %d, %v", gid, err)
	}
	if err := c.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct{ text, want string }{
		{`state_dri = "/x"`, "state_dri"},
		{"[volumes.a]\npath = \"/x\"\nmount_alowed = true", "volumes.a.mount_alowed"},
		{`default_scope_limit = -5`, "negative"},
		{`default_scope_limit = "12 parsecs"`, "unit"},
		{`admin_group = 1.5`, "group name or a gid"},
		{`storage_uid = "x"`, "storage_uid"},
	} {
		_, err := Parse(tc.text)
		if err == nil || !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Parse(%q) = %v; want an error mentioning %q", tc.text, err, tc.want)
		}
	}
}

func TestLoadFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "vfolderd.toml")
	if err := os.WriteFile(p, []byte("log_level = \"debug\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := Load(p)
	if err != nil || c.LogLevel != "debug" {
		t.Fatalf("Load = %+v, %v", c, err)
	}
	if _, err := Load(filepath.Join(dir, "missing.toml")); !errors.Is(err, ErrInvalid) {
		t.Errorf("Load(missing) = %v", err)
	}
}

func TestSampleConfigParses(t *testing.T) {
	data, err := os.ReadFile("../../contrib/vfolderd.toml.sample")
	if err != nil {
		t.Fatal(err)
	}
	c, err := Parse(string(data))
	if err != nil {
		t.Fatalf("sample config: %v", err)
	}
	if len(c.Volumes) == 0 {
		t.Errorf("sample config defines no volume")
	}
}

func validConfig(t *testing.T) *Config {
	t.Helper()
	c := Default()
	c.SetVolume("local", t.TempDir())
	c.StateDir = filepath.Join(t.TempDir(), "state")
	c.Socket = filepath.Join(t.TempDir(), "s.sock")
	c.MountPoint = filepath.Join(t.TempDir(), "mnt")
	c.SessionsDir = filepath.Join(t.TempDir(), "sessions")
	if err := c.Validate(); err != nil {
		t.Fatalf("valid config rejected: %v", err)
	}
	return c
}

func TestValidate(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		mutate func(c *Config)
		want   string
	}{
		{"no volumes", func(c *Config) { c.Volumes = map[string]Volume{} }, "volumes: no volume"},
		{"relative path", func(c *Config) { c.SetVolume("local", "rel/dir") }, "volumes.local.path: \"rel/dir\" is not an absolute"},
		{"missing path", func(c *Config) { c.SetVolume("local", "/nonexistent/vf") }, "volumes.local.path"},
		{"file as volume", func(c *Config) { c.SetVolume("local", file) }, "is not a directory"},
		{"bad name", func(c *Config) { c.SetVolume("Bad/Name", t.TempDir()) }, "volumes.Bad/Name"},
		{"state inside volume", func(c *Config) { c.StateDir = filepath.Join(c.Volumes["local"].Path, "x", "state") }, "state_dir: "},
		{"socket inside volume", func(c *Config) { c.Socket = filepath.Join(c.Volumes["local"].Path, "s.sock") }, "socket: "},
		{"relative state", func(c *Config) { c.StateDir = "state" }, "state_dir: \"state\" is not an absolute"},
		{"nested volumes", func(c *Config) { c.SetVolume("inner", filepath.Join(c.Volumes["local"].Path)) }, "overlaps volume"},
		{"uid", func(c *Config) { c.StorageUID = -1 }, "storage_uid: -1 is out of range"},
		{"gid", func(c *Config) { c.ViewGID = 1 << 33 }, "view_gid"},
		{"level", func(c *Config) { c.LogLevel = "loud" }, "log_level"},
		{"group", func(c *Config) { c.AdminGroup = "no-such-group-vf" }, "admin_group"},
		{"limit", func(c *Config) { c.DefaultScopeLimit = -1 }, "default_scope_limit"},
		{"mount in state", func(c *Config) { c.MountPoint = filepath.Join(c.StateDir, "mnt") }, "mount_point"},
		{"sessions inside volume", func(c *Config) { c.SessionsDir = filepath.Join(c.Volumes["local"].Path, "sess") }, "sessions_dir: "},
		{"sessions relative", func(c *Config) { c.SessionsDir = "sessions" }, "sessions_dir: \"sessions\" is not an absolute"},
		{"sessions in mount point", func(c *Config) { c.SessionsDir = filepath.Join(c.MountPoint, "sessions") }, "sessions_dir: "},
		{"mount point in sessions", func(c *Config) { c.SessionsDir = filepath.Dir(c.MountPoint) }, "overlaps mount_point"},
		{"sessions in state", func(c *Config) { c.SessionsDir = filepath.Join(c.StateDir, "s") }, "overlaps state_dir"},
		{"sessions empty", func(c *Config) { c.SessionsDir = "" }, "sessions_dir: is empty"},
		{"socket in sessions", func(c *Config) { c.Socket = filepath.Join(c.SessionsDir, "vfolderd.sock") }, "only root may enter"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := validConfig(t)
			tc.mutate(c)
			err := c.Validate()
			if err == nil || !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Validate = %v; want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestValidateSymlinkedStateInsideVolume(t *testing.T) {
	c := validConfig(t)
	link := filepath.Join(t.TempDir(), "link")
	if err := os.Symlink(c.Volumes["local"].Path, link); err != nil {
		t.Fatal(err)
	}
	c.StateDir = filepath.Join(link, "not-yet", "state")
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "state_dir") {
		t.Errorf("state dir reached through a symlink into the volume: Validate = %v", err)
	}
}

func TestValidateReportsAllProblems(t *testing.T) {
	c := validConfig(t)
	c.StorageUID = -1
	c.LogLevel = "x"
	err := c.Validate()
	if err == nil || !strings.Contains(err.Error(), "storage_uid") || !strings.Contains(err.Error(), "log_level") {
		t.Errorf("Validate = %v; want both problems", err)
	}
}

func TestRequireMount(t *testing.T) {
	c, err := Parse("[volumes.a]\npath = \"/a\"\nrequire_mount = true\n[volumes.b]\npath = \"/b\"\n")
	if err != nil {
		t.Fatal(err)
	}
	if !c.Volumes["a"].RequireMount || c.Volumes["b"].RequireMount {
		t.Errorf("require_mount: a = %+v, b = %+v; want true for a only (default false)", c.Volumes["a"], c.Volumes["b"])
	}
	c.SetVolume("a", "/c")
	if !c.Volumes["a"].RequireMount {
		t.Errorf("--volume dropped require_mount: %+v", c.Volumes["a"])
	}
	if _, err := Parse("[volumes.a]\npath = \"/a\"\nrequire_mount = \"yes\"\n"); !errors.Is(err, ErrInvalid) {
		t.Errorf("require_mount = \"yes\": %v; want ErrInvalid", err)
	}
}

func TestSetVolumeKeepsSwitches(t *testing.T) {
	c, err := Parse("[volumes.a]\npath = \"/a\"\nclone_allowed = false\n")
	if err != nil {
		t.Fatal(err)
	}
	c.SetVolume("a", "/b")
	c.SetVolume("new", "/n")
	if v := c.Volumes["a"]; v.Path != "/b" || v.CloneAllowed {
		t.Errorf("a = %+v", v)
	}
	if v := c.Volumes["new"]; !v.RWCanDelete || !v.MountAllowed || !v.CloneAllowed {
		t.Errorf("new = %+v", v)
	}
}

func TestParseVolumeFlag(t *testing.T) {
	name, path, err := ParseVolumeFlag("local=/srv/vf=x")
	if err != nil || name != "local" || path != "/srv/vf=x" {
		t.Errorf("ParseVolumeFlag = %q %q %v", name, path, err)
	}
	for _, bad := range []string{"", "local", "=/x", "local=", "Local=/x", "-a=/x", "a/b=/x", strings.Repeat("a", 65) + "=/x", "a=/x\x00y"} {
		if _, _, err := ParseVolumeFlag(bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("ParseVolumeFlag(%q) = %v; want ErrInvalid", bad, err)
		}
	}
}

func FuzzParseVolumeFlag(f *testing.F) {
	for _, s := range []string{"local=/srv/vf", "a=b=c", "=", "", "x.y_z-1=/p", "A=/p"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		name, path, err := ParseVolumeFlag(s)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v does not wrap ErrInvalid", err)
			}
			return
		}
		if ValidateVolumeName(name) != nil || path == "" || strings.ContainsRune(path, 0) {
			t.Fatalf("accepted %q as name %q path %q", s, name, path)
		}
		if name+"="+path != s {
			t.Fatalf("%q does not round-trip: %q=%q", s, name, path)
		}
	})
}

func FuzzParse(f *testing.F) {
	f.Add("state_dir = \"/x\"\n[volumes.a]\npath = \"/v\"\n")
	f.Add("default_scope_limit = \"1.5G\"\nadmin_group = 12\n")
	f.Add("[volumes]\n")
	f.Fuzz(func(t *testing.T, s string) {
		c, err := Parse(s)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v does not wrap ErrInvalid", err)
			}
			return
		}
		if c.DefaultScopeLimit < 0 {
			t.Fatalf("negative default_scope_limit %d accepted", c.DefaultScopeLimit)
		}
		_ = c.Validate()
	})
}

func TestSessionKeys(t *testing.T) {
	c, err := Parse("")
	if err != nil || c.SessionsDir != DefaultSessionsDir || c.ForceStop {
		t.Fatalf("defaults: sessions_dir %q force_stop %v, %v", c.SessionsDir, c.ForceStop, err)
	}
	c, err = Parse("sessions_dir = \"/run/vf-test/sessions\"\nforce_stop = true")
	if err != nil || c.SessionsDir != "/run/vf-test/sessions" || !c.ForceStop {
		t.Errorf("set: sessions_dir %q force_stop %v, %v", c.SessionsDir, c.ForceStop, err)
	}
	if _, err := Parse(`force_stop = "yes"`); err == nil || !strings.Contains(err.Error(), "force_stop") {
		t.Errorf("force_stop = \"yes\": %v; want an error naming the key", err)
	}
	v := validConfig(t)
	v.SessionsDir = filepath.Join(t.TempDir(), "sessions")
	if err := v.Validate(); err != nil {
		t.Errorf("a separate sessions_dir: %v", err)
	}
}

func TestFUSESwitch(t *testing.T) {
	c, err := Parse("")
	if err != nil || !c.FUSE {
		t.Fatalf("default: FUSE=%v, %v; want on", c.FUSE, err)
	}
	c, err = Parse("fuse = false")
	if err != nil || c.FUSE {
		t.Errorf("fuse = false: FUSE=%v, %v", c.FUSE, err)
	}
	if _, err := Parse(`fuse = "no"`); err == nil || !strings.Contains(err.Error(), "fuse") {
		t.Errorf("fuse = \"no\": %v; want an error naming the key", err)
	}
}

func TestFUSEIoUringSwitch(t *testing.T) {
	c, err := Parse("")
	if err != nil || c.FUSEIoUring {
		t.Fatalf("default: FUSEIoUring=%v, %v; want off", c.FUSEIoUring, err)
	}
	c, err = Parse("fuse_io_uring = true")
	if err != nil || !c.FUSEIoUring {
		t.Errorf("fuse_io_uring = true: FUSEIoUring=%v, %v", c.FUSEIoUring, err)
	}
}

// TestVolumeChown: the chown key takes "ignore" (the default) or
// "refuse"; anything else fails Validate naming the key, and the file's
// other problems are reported with it.
func TestVolumeChown(t *testing.T) {
	vol := t.TempDir()
	for _, tc := range []struct {
		value string
		want  meta.ChownPolicy
	}{{"", meta.ChownIgnore}, {`chown = "ignore"`, meta.ChownIgnore}, {`chown = "refuse"`, meta.ChownRefuse}} {
		c := validConfig(t)
		p, err := Parse("[volumes.v]\npath = \"" + vol + "\"\n" + tc.value + "\n")
		if err != nil {
			t.Fatalf("%q: %v", tc.value, err)
		}
		c.Volumes = p.Volumes
		if got := c.Volumes["v"].Chown; got != tc.want {
			t.Errorf("%q: chown = %q, want %q", tc.value, got, tc.want)
		}
		if err := c.Validate(); err != nil {
			t.Errorf("%q: Validate: %v", tc.value, err)
		}
	}
	for _, bad := range []string{`"Refuse"`, `"no"`, `""`} {
		c := validConfig(t)
		p, err := Parse("[volumes.v]\npath = \"/nonexistent/vf\"\nchown = " + bad + "\n")
		if err != nil {
			t.Fatalf("chown = %s: %v", bad, err)
		}
		c.Volumes = p.Volumes
		err = c.Validate()
		if err == nil || !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "volumes.v.chown: ") ||
			!strings.Contains(err.Error(), `"ignore"`) || !strings.Contains(err.Error(), "volumes.v.path") {
			t.Errorf("chown = %s: Validate = %v; want both errors, the chown one naming the key and the choices", bad, err)
		}
	}
	if _, err := Parse("[volumes.v]\npath = \"/x\"\nchown = false\n"); err == nil || !errors.Is(err, ErrInvalid) {
		t.Errorf("chown = false: %v, want a type error", err)
	}
}
