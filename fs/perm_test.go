package fs

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// fakeCaller is a prober with fixed answers; it counts what was asked.
type fakeCaller struct {
	uid       uint32
	groups    []uint32 // fsgid first
	caps      uint64
	groupAsks int
	capAsks   int
}

func (f *fakeCaller) fsuid() uint32 { return f.uid }

func (f *fakeCaller) inGroup(gid uint32) bool {
	f.groupAsks++
	for _, g := range f.groups {
		if g == gid {
			return true
		}
	}
	return false
}

func (f *fakeCaller) capable(c uint) bool {
	f.capAsks++
	return f.caps&(1<<c) != 0
}

const (
	tUID = 1000
	tGID = 1000
)

func capSet(cs ...uint) uint64 {
	var s uint64
	for _, c := range cs {
		s |= 1 << c
	}
	return s
}

func TestPermits(t *testing.T) {
	owner := func() *fakeCaller { return &fakeCaller{uid: tUID, groups: []uint32{tGID}} }
	member := func() *fakeCaller { return &fakeCaller{uid: 2000, groups: []uint32{2000, tGID}} }
	other := func() *fakeCaller { return &fakeCaller{uid: 3000, groups: []uint32{3000}} }
	root := func() *fakeCaller { return &fakeCaller{uid: 0, groups: []uint32{0}, caps: ^uint64(0)} }
	rootNoCaps := func() *fakeCaller { return &fakeCaller{uid: 0, groups: []uint32{0}} }
	readSearch := func() *fakeCaller {
		return &fakeCaller{uid: 0, groups: []uint32{0}, caps: capSet(capDacReadSearch)}
	}
	const reg, dir = unix.S_IFREG, unix.S_IFDIR
	for _, tc := range []struct {
		name   string
		c      func() *fakeCaller
		mode   uint32
		mask   uint32
		want   bool
		noProc bool // decided without asking for groups or capabilities
	}{
		{"owner reads 0600", owner, reg | 0o600, mayRead, true, true},
		{"owner writes 0400", owner, reg | 0o400, mayWrite, false, false},
		// The owner class uses the owner bits only.
		{"owner 0077 reads", owner, reg | 0o077, mayRead, false, false},
		{"member 0640 reads", member, reg | 0o640, mayRead, true, false},
		{"member 0604 reads: group bits only", member, reg | 0o604, mayRead, false, false},
		{"other 0604 reads", other, reg | 0o604, mayRead, true, false},
		{"other 0644 reads: group and other agree", other, reg | 0o644, mayRead, true, true},
		{"other 0640 reads", other, reg | 0o640, mayRead, false, false},
		{"member dir 0750 searches", member, dir | 0o750, mayExec, true, false},
		{"other dir 0711 searches", other, dir | 0o711, mayExec, true, true},
		{"other dir 0700 searches", other, dir | 0o700, mayExec, false, false},
		{"root writes 0000 file", root, reg, mayWrite, true, false},
		{"root reads 0000 file", root, reg, mayRead, true, false},
		{"root execs 0644 file", root, reg | 0o644, mayExec, false, false},
		{"root execs 0100 file", root, reg | 0o100, mayExec, true, false},
		{"root searches 0000 dir", root, dir, mayExec, true, false},
		{"root writes 0000 dir", root, dir, mayWrite | mayExec, true, false},
		{"root without caps reads 0600", rootNoCaps, reg | 0o600, mayRead, false, false},
		{"root without caps reads 0604", rootNoCaps, reg | 0o604, mayRead, true, false},
		{"read-search reads 0000 file", readSearch, reg, mayRead, true, false},
		{"read-search reads and writes 0000 file", readSearch, reg, mayRead | mayWrite, false, false},
		{"read-search lists 0000 dir", readSearch, dir, mayRead | mayExec, true, false},
		{"read-search writes 0000 dir", readSearch, dir, mayWrite | mayExec, false, false},
		{"empty mask", other, reg, 0, true, true},
	} {
		c := tc.c()
		got := permits(c, tc.mode, tUID, tGID, tc.mask)
		if got != tc.want {
			t.Errorf("%s: permits = %v, want %v", tc.name, got, tc.want)
		}
		if tc.noProc && (c.groupAsks > 0 || c.capAsks > 0) {
			t.Errorf("%s: asked for groups (%d) or capabilities (%d) it does not need", tc.name, c.groupAsks, c.capAsks)
		}
	}
}

// refPermits is generic_permission (fs/namei.c) as the kernel writes it,
// with every fact known up front.
func refPermits(uid uint32, inGroup bool, caps uint64, mode, iuid, mask uint32) bool {
	capable := func(c uint) bool { return caps&(1<<c) != 0 }
	mask &= mayRead | mayWrite | mayExec
	// acl_permission_check
	var denied bool
	if uid == iuid {
		denied = mask&^((mode>>6)&7) != 0
	} else {
		m := mode
		if mask&(m^(m>>3)) != 0 && inGroup {
			m >>= 3
		}
		denied = mask&^m != 0
	}
	if !denied {
		return true
	}
	if mode&unix.S_IFMT == unix.S_IFDIR {
		if mask&mayWrite == 0 && capable(capDacReadSearch) {
			return true
		}
		return capable(capDacOverride)
	}
	if mask == mayRead && capable(capDacReadSearch) {
		return true
	}
	if mask&mayExec == 0 || mode&0o111 != 0 {
		return capable(capDacOverride)
	}
	return false
}

// TestPermitsReference compares permits with the reference for every
// permission mode, type, mask, caller class and capability set.
func TestPermitsReference(t *testing.T) {
	capSets := []uint64{0, capSet(capDacOverride), capSet(capDacReadSearch), capSet(capDacOverride, capDacReadSearch)}
	n := 0
	for _, typ := range []uint32{unix.S_IFREG, unix.S_IFDIR, unix.S_IFLNK, unix.S_IFIFO} {
		for perm := uint32(0); perm < 0o1000*3; perm++ {
			// Every permission bit pattern, without and with the
			// sticky or set-id bits.
			mode := typ | perm%0o1000 | []uint32{0, 0o1000, 0o6000}[perm/0o1000]
			for mask := uint32(0); mask < 8; mask++ {
				for _, uid := range []uint32{tUID, 2000} {
					for _, member := range []bool{false, true} {
						for _, caps := range capSets {
							groups := []uint32{5000}
							if member {
								groups = append(groups, tGID)
							}
							c := &fakeCaller{uid: uid, groups: groups, caps: caps}
							got := permits(c, mode, tUID, tGID, mask)
							want := refPermits(uid, member, caps, mode, tUID, mask)
							if got != want {
								t.Fatalf("mode %o mask %d uid %d member %v caps %x: permits %v, reference %v", mode, mask, uid, member, caps, got, want)
							}
							n++
						}
					}
				}
			}
		}
	}
	t.Logf("%d combinations agree", n)
}

func TestMayDelete(t *testing.T) {
	other := &fakeCaller{uid: 3000, groups: []uint32{3000}}
	owner := &fakeCaller{uid: tUID, groups: []uint32{tGID}}
	fowner := &fakeCaller{uid: 3000, groups: []uint32{3000}, caps: capSet(capFowner)}
	for _, tc := range []struct {
		c    prober
		mode uint32
		want syscall.Errno
	}{
		{other, unix.S_IFDIR | 0o777, 0},
		{other, unix.S_IFDIR | 0o1777, syscall.EPERM},
		{other, unix.S_IFDIR | 0o1755, syscall.EACCES},
		{owner, unix.S_IFDIR | 0o1700, 0},
		{fowner, unix.S_IFDIR | 0o1777, 0},
		{other, unix.S_IFDIR | 0o776, syscall.EACCES},
	} {
		if got := mayDelete(tc.c, tc.mode, tUID, tGID, tUID); got != tc.want {
			t.Errorf("mayDelete(uid %d, %o) = %v, want %v", tc.c.fsuid(), tc.mode, got, tc.want)
		}
	}
}

func TestSetattrCheck(t *testing.T) {
	owner := func() *fakeCaller { return &fakeCaller{uid: tUID, groups: []uint32{tGID}} }
	ownerOut := func() *fakeCaller { return &fakeCaller{uid: tUID, groups: []uint32{4000}} }
	other := func() *fakeCaller { return &fakeCaller{uid: 3000, groups: []uint32{3000}} }
	root := func() *fakeCaller { return &fakeCaller{uid: 0, groups: []uint32{0}, caps: ^uint64(0)} }
	const dir = unix.S_IFDIR
	in := func(valid uint32, f func(*fuse.SetAttrIn)) *fuse.SetAttrIn {
		x := &fuse.SetAttrIn{}
		x.Valid = valid
		if f != nil {
			f(x)
		}
		return x
	}
	now := uint32(fuse.FATTR_ATIME | fuse.FATTR_MTIME | fuse.FATTR_ATIME_NOW | fuse.FATTR_MTIME_NOW)
	for _, tc := range []struct {
		name     string
		c        func() *fakeCaller
		mode     uint32
		in       *fuse.SetAttrIn
		want     syscall.Errno
		wantMode uint32
	}{
		{"owner chmod", owner, dir | 0o755, in(fuse.FATTR_MODE, func(x *fuse.SetAttrIn) { x.Mode = 0o700 }), 0, 0o700},
		{"other chmod", other, dir | 0o777, in(fuse.FATTR_MODE, func(x *fuse.SetAttrIn) { x.Mode = 0o700 }), syscall.EPERM, 0},
		{"root chmod", root, dir, in(fuse.FATTR_MODE, func(x *fuse.SetAttrIn) { x.Mode = 0o700 }), 0, 0o700},
		{"owner in group keeps sgid", owner, dir | 0o755, in(fuse.FATTR_MODE, func(x *fuse.SetAttrIn) { x.Mode = 0o2755 }), 0, 0o2755},
		{"owner out of group loses sgid", ownerOut, dir | 0o755, in(fuse.FATTR_MODE, func(x *fuse.SetAttrIn) { x.Mode = 0o2755 }), 0, 0o755},
		{"root keeps sgid", root, dir | 0o755, in(fuse.FATTR_MODE, func(x *fuse.SetAttrIn) { x.Mode = 0o2755 }), 0, 0o2755},
		{"owner chown to self", owner, 0o644, in(fuse.FATTR_UID|fuse.FATTR_GID, func(x *fuse.SetAttrIn) { x.Uid, x.Gid = tUID, tGID }), 0, 0},
		{"owner chown to root", owner, 0o644, in(fuse.FATTR_UID, func(x *fuse.SetAttrIn) { x.Uid = 0 }), syscall.EPERM, 0},
		{"owner chgrp to a group it is not in", owner, 0o644, in(fuse.FATTR_GID, func(x *fuse.SetAttrIn) { x.Gid = 0 }), syscall.EPERM, 0},
		{"other chown to owner", other, 0o666, in(fuse.FATTR_UID, func(x *fuse.SetAttrIn) { x.Uid = tUID }), syscall.EPERM, 0},
		{"root chown", root, 0o644, in(fuse.FATTR_UID|fuse.FATTR_GID, nil), 0, 0},
		{"other touches a file it may write", other, 0o666, in(now, nil), 0, 0},
		{"other touches a file it may not write", other, 0o644, in(now, nil), syscall.EACCES, 0},
		{"other sets explicit times on a writable file", other, 0o666, in(fuse.FATTR_ATIME|fuse.FATTR_MTIME, nil), syscall.EPERM, 0},
		{"other sets mtime now only", other, 0o666, in(fuse.FATTR_MTIME|fuse.FATTR_MTIME_NOW, nil), syscall.EPERM, 0},
		{"owner sets explicit times on 0000", owner, 0o000, in(fuse.FATTR_ATIME|fuse.FATTR_MTIME, nil), 0, 0},
		{"other truncates 0644", other, 0o644, in(fuse.FATTR_SIZE, nil), syscall.EACCES, 0},
		{"other truncates 0666", other, 0o666, in(fuse.FATTR_SIZE, nil), 0, 0},
		{"ftruncate is not checked here", other, 0o644, in(fuse.FATTR_SIZE|fuse.FATTR_FH, nil), 0, 0},
	} {
		m, got := setattrCheck(tc.c(), unix.S_IFREG|tc.mode, tUID, tGID, tc.in)
		if tc.mode&unix.S_IFMT == unix.S_IFDIR {
			m, got = setattrCheck(tc.c(), tc.mode, tUID, tGID, tc.in)
		}
		if got != tc.want || got == 0 && tc.in.Valid&fuse.FATTR_MODE != 0 && m != tc.wantMode {
			t.Errorf("%s: setattrCheck = %o, %v; want %o, %v", tc.name, m, got, tc.wantMode, tc.want)
		}
	}
}

func TestXattrCheckAndOpenMask(t *testing.T) {
	other := &fakeCaller{uid: 3000, groups: []uint32{3000}}
	owner := &fakeCaller{uid: tUID, groups: []uint32{tGID}}
	for _, tc := range []struct {
		c    prober
		mode uint32
		mask uint32
		want syscall.Errno
	}{
		{other, unix.S_IFREG | 0o666, mayWrite, 0},
		{other, unix.S_IFREG | 0o644, mayWrite, syscall.EACCES},
		{other, unix.S_IFREG | 0o600, mayRead, syscall.EACCES},
		{other, unix.S_IFDIR | 0o1777, mayWrite, syscall.EPERM},
		{owner, unix.S_IFDIR | 0o1755, mayWrite, 0},
		{other, unix.S_IFIFO | 0o666, mayWrite, syscall.EPERM},
		{other, unix.S_IFIFO | 0o666, mayRead, syscall.ENODATA},
	} {
		if got := xattrCheck(tc.c, tc.mode, tUID, tGID, tc.mask); got != tc.want {
			t.Errorf("xattrCheck(uid %d, %o, %d) = %v, want %v", tc.c.fsuid(), tc.mode, tc.mask, got, tc.want)
		}
	}
	for flags, want := range map[uint32]uint32{
		unix.O_RDONLY:                mayRead,
		unix.O_WRONLY:                mayWrite,
		unix.O_RDWR:                  mayRead | mayWrite,
		unix.O_RDONLY | unix.O_TRUNC: mayRead | mayWrite,
		unix.O_RDONLY | fmodeExec:    mayExec,
	} {
		if got := openMask(flags); got != want {
			t.Errorf("openMask(%#x) = %d, want %d", flags, got, want)
		}
	}
}

// TestCredFromProc reads this process's own groups and capabilities the
// way the checks read a caller's.
func TestCredFromProc(t *testing.T) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	// The fs ids equal the effective ones here.
	c := &cred{uid: uint32(os.Geteuid()), gid: uint32(os.Getegid()), pid: uint32(unix.Gettid())}
	c.load()
	groups, err := os.Getgroups()
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range groups {
		if !c.inGroup(uint32(g)) {
			t.Errorf("not in its own supplementary group %d", g)
		}
	}
	if !c.valid {
		t.Fatalf("/proc/%d/status not taken as the caller's", c.pid)
	}
	if c.capable(capChown); !c.capsOK {
		t.Errorf("capget of the thread itself failed")
	}
	if os.Geteuid() == 0 && !c.capable(capDacOverride) {
		t.Logf("running as root without CAP_DAC_OVERRIDE")
	}
	// Ids that /proc does not show: its groups are not trusted.
	wrong := &cred{uid: c.uid + 1, gid: c.gid, pid: c.pid}
	if len(groups) > 0 && wrong.inGroup(uint32(groups[len(groups)-1])) && uint32(groups[len(groups)-1]) != wrong.gid {
		t.Errorf("a request whose ids /proc does not show got groups or capabilities")
	}
	// access(2) by a non-root uid has no capability.
	acc := &cred{uid: 1234, gid: 1234, pid: c.pid, access: true}
	if acc.capable(capDacOverride) {
		t.Errorf("access(2) by uid 1234 has a capability")
	}
	none := &cred{uid: 0, gid: 0}
	if none.capable(capDacOverride) || none.inGroup(5) {
		t.Errorf("a caller without a pid has groups or capabilities")
	}
}

// TestFsPermGetattrPerCreate counts the GETATTR requests that creating
// and removing files in one directory costs: with default_permissions
// the kernel re-reads the directory's attributes after each change of
// its entries; with the daemon's checks it has no need to.
func TestFsPermGetattrPerCreate(t *testing.T) {
	const n = 100
	per := map[bool]float64{}
	for _, kernel := range []bool{true, false} {
		f, dir, ops := tracedMount(t, func(o *Options) { o.Tuning.KernelPermissions = kernel })
		s := testFolder(t, dir, 1, "wd")
		if err := f.AddView(s); err != nil {
			t.Fatal(err)
		}
		d := filepath.Join(f.MountPoint(), "sessions", "s1", "wd", "d")
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
		before := ops.count("GETATTR")
		start := time.Now()
		for i := 0; i < n; i++ {
			p := filepath.Join(d, fmt.Sprintf("f%d", i))
			fh, err := os.Create(p)
			if err != nil {
				t.Fatal(err)
			}
			fh.Close()
			if err := os.Remove(p); err != nil {
				t.Fatal(err)
			}
		}
		per[kernel] = float64(ops.count("GETATTR")-before) / (2 * n)
		t.Logf("kernel_permissions=%v: %.2f GETATTR per create or unlink, %v per create+unlink (debug trace on)", kernel, per[kernel], time.Since(start)/n)
	}
	if per[false] > 0.1 {
		t.Errorf("with the daemon's checks, %.2f GETATTR per create or unlink; want (almost) none", per[false])
	}
	if per[true] < 0.5 {
		t.Logf("with default_permissions only %.2f GETATTR per create or unlink: this kernel does not re-read the directory", per[true])
	}
}
