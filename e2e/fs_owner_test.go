package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/vfolder/vfolder/meta"
)

// TestFsOwnership: whoever writes through a view (uid 1000 or root),
// storage gets the storage owner and every view shows its own owner.
func TestFsOwnership(t *testing.T) {
	e := fsSetup(t)
	rel := e.folder(t)
	back := filepath.Join(e.volume, rel)
	a := e.spec(rel, "a", meta.PermRW)
	a.RWCanDelete = true
	va := e.add(t, a)
	bspec := e.spec(rel, "b", meta.PermRW)
	bspec.UID, bspec.GID = 2000, 2000
	vb := e.add(t, bspec)
	ba := e.bind(t, va)

	script := "cd " + ba + " && umask 027 && echo data > byuser && mkdir userdir && ln -s /etc userlink && mkfifo userfifo" +
		" && umask 0 && touch open666 && mkdir open777 && echo x > userdir/nested" +
		" && cp byuser copied && mv copied moved && chown 1000:1000 byuser && chown 1000 byuser"
	if out, err := fsRunAs(t, 1000, 1000, script); err != nil {
		t.Fatalf("as uid 1000: %v\n%s", err, out)
	}
	if out, err := fsRunAs(t, 1000, 1000, "chgrp 0 "+ba+"/byuser"); err == nil || !strings.Contains(out, "not permitted") {
		t.Errorf("chgrp to a foreign group as uid 1000: %v %q", err, out)
	}
	if err := os.WriteFile(filepath.Join(va, "byroot"), []byte("r"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(va, "rootdir"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("byroot", filepath.Join(va, "rootlink")); err != nil {
		t.Fatal(err)
	}
	if err := unix.Chown(filepath.Join(va, "byroot"), 0, 0); err != unix.EPERM {
		t.Errorf("chown to root through the view: %v, want EPERM", err)
	}

	wantMode := map[string]uint32{
		"byuser": 0o640, "userdir": 0o750, "open666": 0o666, "open777": 0o777,
		"byroot": 0o600, "rootdir": 0o700, "userfifo": 0o640, "moved": 0o640,
	}
	names := []string{"byuser", "userdir", "userlink", "userfifo", "open666", "open777", "userdir/nested",
		"moved", "byroot", "rootdir", "rootlink"}
	for _, name := range names {
		st := fsLstat(t, filepath.Join(back, name))
		if st.Uid != fsStorageUID || st.Gid != fsStorageGID {
			t.Errorf("storage %s owned by %d:%d, want %d:%d", name, st.Uid, st.Gid, fsStorageUID, fsStorageGID)
		}
		if want, ok := wantMode[name]; ok && st.Mode&0o7777 != want {
			t.Errorf("storage %s mode %o, want %o", name, st.Mode&0o7777, want)
		}
		for _, c := range []struct {
			dir string
			id  uint32
		}{{va, 1000}, {vb, 2000}} {
			vst := fsLstat(t, filepath.Join(c.dir, name))
			if vst.Uid != c.id || vst.Gid != c.id {
				t.Errorf("%s via view owned by %d:%d, want %d", name, vst.Uid, vst.Gid, c.id)
			}
			if vst.Mode != st.Mode {
				t.Errorf("%s via view mode %o, storage %o", name, vst.Mode, st.Mode)
			}
		}
	}
	if s, err := os.Readlink(filepath.Join(back, "userlink")); err != nil || s != "/etc" {
		t.Errorf("symlink stored as %q %v", s, err)
	}
	// The view roots show their owners too.
	if st := fsLstat(t, va); st.Uid != 1000 {
		t.Errorf("view root a owned by %d", st.Uid)
	}
	if st := fsLstat(t, vb); st.Uid != 2000 {
		t.Errorf("view root b owned by %d", st.Uid)
	}
	// uid 2000 may not write into a 0750 directory shown as 1000's.
	bb := e.bind(t, vb)
	if out, err := fsRunAs(t, 1000, 1000, "touch "+bb+"/userdir/x"); err == nil {
		t.Errorf("uid 1000 wrote into view b (owned by 2000): %q", out)
	}
}

// TestFsKillPriv: a write by a non-root caller clears set-id bits, which
// the daemon does itself (FUSE_HANDLE_KILLPRIV_V2).
func TestFsKillPriv(t *testing.T) {
	e := fsSetup(t)
	rel := e.folder(t)
	s := e.spec(rel, "k", meta.PermRW)
	b := e.bind(t, e.add(t, s))
	if out, err := fsRunAs(t, 1000, 1000, "cd "+b+" && echo a > suid && chmod 6755 suid && stat -c %a suid && echo b >> suid"); err != nil {
		t.Fatalf("%v %s", err, out)
	} else if !strings.HasPrefix(out, "6755") {
		t.Errorf("chmod 6755 gave %q", out)
	}
	st := fsLstat(t, filepath.Join(e.volume, rel, "suid"))
	if st.Mode&0o7777 != 0o755 {
		t.Errorf("after a write by uid 1000 the mode is %o, want 755", st.Mode&0o7777)
	}
	// Root keeps the bits, as on a local file system.
	p := filepath.Join(e.add(t, e.spec(rel, "k2", meta.PermRW)), "rootsuid")
	os.WriteFile(p, []byte("a"), 0o755)
	if err := unix.Chmod(p, 0o4755); err != nil {
		t.Fatal(err)
	}
	fh, _ := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
	fh.Write([]byte("b"))
	fh.Close()
	if st := fsLstat(t, filepath.Join(e.volume, rel, "rootsuid")); st.Mode&0o7777 != 0o4755 {
		t.Errorf("after a write by root the mode is %o, want 4755", st.Mode&0o7777)
	}
}
