package fs

import (
	"context"
	"strings"
	"testing"

	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/vfolder/vfolder/internal/backing"
	"github.com/vfolder/vfolder/quota"
)

// TestFsWriteAllocs: the write path (called as go-fuse calls it, without
// a mount) allocates nothing, with the quota ledger on, for writes inside
// the file and for appends.
func TestFsWriteAllocs(t *testing.T) {
	h, m, sk := ledgerHandle(t, 1<<40)
	ctx := context.Background()
	buf := make([]byte, 4096)
	// The first growth stores the inode's dirty mark (once per hold).
	if w, errno := h.Write(ctx, buf, 0); w != 4096 || errno != 0 {
		t.Fatalf("write: %d %v", w, errno)
	}
	inside := testing.AllocsPerRun(1000, func() {
		if w, errno := h.Write(ctx, buf, 0); w != 4096 || errno != 0 {
			t.Fatalf("write: %d %v", w, errno)
		}
	})
	off := int64(4096)
	appends := testing.AllocsPerRun(1000, func() {
		if w, errno := h.Writev(ctx, [][]byte{buf[:1024], buf[1024:]}, off); w != 4096 || errno != 0 {
			t.Fatalf("append: %d %v", w, errno)
		}
		off += 4096
	})
	if inside != 0 || appends != 0 {
		t.Errorf("allocations per write: %v inside the file, %v appending; want 0", inside, appends)
	}
	if errno := h.Release(ctx); errno != 0 {
		t.Fatal(errno)
	}
	if err := m.Flush(); err != nil {
		t.Fatal(err)
	}
	if u := m.Usage(sk); u.Used != off {
		t.Errorf("usage %d, want %d", u.Used, off)
	}
}

// FuzzFsQuotaHint: the path hint of an entry is its folder-relative path:
// the view's subpath, the components and the name, joined by single
// slashes, which split back into exactly those names.
func FuzzFsQuotaHint(f *testing.F) {
	f.Add("", "a/b", "c")
	f.Add("sub/deeper", "", "x")
	f.Add("s", "a", "")
	f.Fuzz(func(t *testing.T, prefix, dirs, name string) {
		pre, ok := backing.SplitRel(prefix)
		if !ok {
			return
		}
		comps, ok := backing.SplitRel(dirs)
		if !ok || (name != "" && !backing.ValidName(name)) {
			return
		}
		q := quotaHook{m: &quota.Manager{}, prefix: strings.Join(pre, "/")}
		h := q.hint(comps, name)
		want := append(append(append([]string{}, pre...), comps...), name)
		if name == "" {
			want = want[:len(want)-1]
		}
		if len(want) == 0 {
			if h != "" {
				t.Fatalf("hint %q for no components", h)
			}
			return
		}
		got, ok := backing.SplitRel(h)
		if !ok || strings.Join(got, "\x00") != strings.Join(want, "\x00") || strings.HasPrefix(h, "/") || strings.Contains(h, "//") {
			t.Fatalf("hint %q splits into %q, want %q", h, got, want)
		}
		if (&quotaHook{}).hint(comps, name) != "" {
			t.Fatal("a hint without a ledger")
		}
	})
}

// FuzzFsScopeStatfs: the statfs of a scope never shows more than the
// limit, free never exceeds the size nor the volume's available space, and
// a scope at or over its limit shows nothing free.
func FuzzFsScopeStatfs(f *testing.F) {
	f.Add(int64(100<<20), int64(10<<20), int64(0), int64(0), uint32(4096), uint64(1<<30))
	f.Add(int64(1000), int64(1000), int64(5), int64(7), uint32(0), uint64(0))
	f.Add(int64(1<<40), int64(1<<41), int64(10), int64(3), uint32(512), uint64(5))
	f.Fuzz(func(t *testing.T, limit, used, ilimit, iused int64, frsize uint32, avail uint64) {
		if limit < 0 || used < 0 || ilimit < 0 || iused < 0 {
			return
		}
		out := fuse.StatfsOut{Blocks: 1 << 40, Bfree: avail, Bavail: avail, Files: 1 << 30, Ffree: 1 << 29, Bsize: frsize, Frsize: frsize}
		u := quota.Usage{Used: used, Limit: limit, UsedInodes: iused, LimitInodes: ilimit}
		scopeStatfs(u, &out)
		if limit > 0 {
			unit := uint64(out.Frsize)
			if unit == 0 {
				t.Fatal("zero block size")
			}
			if out.Blocks*unit > uint64(limit) || out.Bfree > out.Blocks || out.Bavail > out.Bfree {
				t.Fatalf("limit %d used %d: %+v", limit, used, out)
			}
			if frsize != 0 && out.Bavail > avail {
				t.Fatalf("available %d over the volume's %d", out.Bavail, avail)
			}
			if used >= limit && (out.Bfree != 0 || out.Bavail != 0) {
				t.Fatalf("full scope shows free space: %+v", out)
			}
		}
		if ilimit > 0 {
			if out.Files != uint64(ilimit) || out.Ffree > out.Files || (iused >= ilimit && out.Ffree != 0) {
				t.Fatalf("inode limit %d used %d: %+v", ilimit, iused, out)
			}
		}
	})
}
