package e2e

import (
	"os"
	"path/filepath"
	"strconv"
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
	// chown to another owner succeeds and changes no owner (checked
	// below with the others).
	if err := unix.Chown(filepath.Join(va, "byroot"), 0, 0); err != nil {
		t.Errorf("chown to root through the view: %v, want success", err)
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

// TestFsKillPriv: no set-id bit on a regular file is stored through a
// view (chmod 6755 by uid 1000 or by root stores 0755), and a file given
// set-id bits on storage loses them when changed through a view, by uid
// 1000 or by root: root in a container is not privileged on the storage.
func TestFsKillPriv(t *testing.T) {
	e := fsSetup(t)
	rel := e.folder(t)
	back := filepath.Join(e.volume, rel)
	s := e.spec(rel, "k", meta.PermRW)
	b := e.bind(t, e.add(t, s))
	if out, err := fsRunAs(t, 1000, 1000, "cd "+b+" && cp /bin/sh ./sh && chmod 6755 sh && stat -c %a sh"); err != nil {
		t.Fatalf("%v %s", err, out)
	} else if strings.TrimSpace(out) != "755" {
		t.Errorf("chmod 6755 as uid 1000 shows %q, want 755", out)
	}
	if st := fsLstat(t, filepath.Join(back, "sh")); st.Mode&0o7777 != 0o755 {
		t.Errorf("chmod 6755 as uid 1000 stored %o, want 755", st.Mode&0o7777)
	}
	p := filepath.Join(e.add(t, e.spec(rel, "k2", meta.PermRW)), "rootsuid")
	if err := os.WriteFile(p, []byte("a"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Chmod(p, 0o4755); err != nil {
		t.Fatal(err)
	}
	if st := fsLstat(t, filepath.Join(back, "rootsuid")); st.Mode&0o7777 != 0o755 {
		t.Errorf("chmod 4755 as root stored %o, want 755", st.Mode&0o7777)
	}
	for i, who := range []uint32{1000, 0} {
		name := "behind" + strconv.Itoa(i)
		bp := filepath.Join(back, name)
		if err := os.WriteFile(bp, []byte("a"), 0o755); err != nil {
			t.Fatal(err)
		}
		os.Chown(bp, fsStorageUID, fsStorageGID)
		if err := unix.Chmod(bp, 0o6777); err != nil {
			t.Fatal(err)
		}
		if out, err := fsRunAs(t, who, who, "echo b >> "+b+"/"+name); err != nil {
			t.Fatalf("append as uid %d: %v %s", who, err, out)
		}
		if st := fsLstat(t, bp); st.Mode&0o7777 != 0o777 {
			t.Errorf("after a write by uid %d the mode is %o, want 777", who, st.Mode&0o7777)
		}
	}
}
