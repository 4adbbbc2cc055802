package volume

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestScanLayout(t *testing.T) {
	v, dir := openTemp(t)
	for _, id := range []string{folder1, folder2} {
		if err := v.CreateFolder(owner, id, os.Geteuid(), os.Getegid()); err != nil {
			t.Fatal(err)
		}
	}
	// Content inside a folder is never looked at.
	if err := os.WriteFile(filepath.Join(v.FolderPath(owner, folder1), "NOT-HEX"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, versionFile), []byte("3\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	l, err := v.ScanLayout(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(l.Strays) != 0 || len(l.Folders) != 2 || l.Folders[0].ID != folder1 || l.Folders[1].ID != folder2 || l.Folders[0].ScopeHex != owner.UUID {
		t.Fatalf("layout: %+v", l)
	}
	if id, err := l.Folders[0].FolderID(); err != nil || id != folder1 || l.Folders[0].Rel != "2b1a7c4e5d3f4a8e9c0b1f2e3d4c5b6a/01/23/456789abcdef0123456789abcdef" {
		t.Errorf("folder: %+v, %v", l.Folders[0], err)
	}

	// Strays at every level.
	scope := filepath.Join(dir, owner.UUID)
	mk := func(p string) {
		if err := os.MkdirAll(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	mk(filepath.Join(dir, "ABCDEF0123456789ABCDEF0123456789")) // upper case
	mk(filepath.Join(scope, "0g"))                             // not hex
	mk(filepath.Join(scope, "01", "234"))                      // wrong length
	mk(filepath.Join(scope, "01", "23", "short"))              // wrong length
	if err := os.WriteFile(filepath.Join(scope, "01", "file"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/", filepath.Join(scope, "02")); err != nil {
		t.Fatal(err)
	}
	l, err = v.ScanLayout(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, s := range l.Strays {
		got = append(got, s.Rel)
	}
	want := []string{
		"2b1a7c4e5d3f4a8e9c0b1f2e3d4c5b6a/01/23/short",
		"2b1a7c4e5d3f4a8e9c0b1f2e3d4c5b6a/01/234",
		"2b1a7c4e5d3f4a8e9c0b1f2e3d4c5b6a/01/file",
		"2b1a7c4e5d3f4a8e9c0b1f2e3d4c5b6a/02",
		"2b1a7c4e5d3f4a8e9c0b1f2e3d4c5b6a/0g",
		"ABCDEF0123456789ABCDEF0123456789",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") || len(l.Folders) != 2 {
		t.Errorf("strays:\n  %s\nwant\n  %s\n(folders %d)", strings.Join(got, "\n  "), strings.Join(want, "\n  "), len(l.Folders))
	}
}

func TestStatfs(t *testing.T) {
	v, dir := openTemp(t)
	sp, err := v.Statfs()
	if err != nil {
		t.Fatal(err)
	}
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	bs := st.Frsize
	if bs == 0 {
		bs = st.Bsize
	}
	if sp.CapacityBytes != int64(st.Blocks)*bs || sp.CapacityInodes != int64(st.Files) {
		t.Errorf("capacity %d bytes %d inodes; statfs says %d, %d", sp.CapacityBytes, sp.CapacityInodes, int64(st.Blocks)*bs, st.Files)
	}
	if sp.CapacityBytes <= 0 || sp.FreeBytes > sp.CapacityBytes || sp.UsedBytes+sp.FreeBytes > sp.CapacityBytes {
		t.Errorf("figures do not add up: %+v", sp)
	}
}
