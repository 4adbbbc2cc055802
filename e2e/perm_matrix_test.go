package e2e

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vfolder/vfolder/api"
)

// The permission matrix: every permission-relevant
// system call, as root, as the view's uid, as other uids in and out of the
// view's group, on files and directories of many modes, answered by a
// vfolder view through a real daemon and by a native directory on the
// host file system that shows the same owner and modes. Every case whose
// errno differs is reported with the case. It runs against both ways of
// checking permissions (permMounts): the kernel's default_permissions
// (--kernel-permissions) and the daemon's own checks (the default).
//
// Beyond single system calls, the "-warm" cases first walk the same path
// as root, so that the kernel holds the entries: a walk through them by
// a caller that may not search a directory on the way must still fail
// (without default_permissions only the daemon's LOOKUP can refuse it,
// so such entries are not cached). exec runs execve(2) on a fixture that
// is no executable: ENOEXEC means the permission checks let it through.
//
// What "sticky" means in a view: a view shows every entry as owned by the
// view's uid, so a sticky directory in a view never holds another owner's
// entry. The native side shows the same single owner, so the cases ask
// the kernel's question "may a caller who owns neither the entry nor the
// directory remove or rename it" (no: EPERM), "may the owner" (yes) and
// "may root" (yes). Entries of several owners cannot be built in a view.
//
// ro views: the ro cases run against a ro session view, bound without
// MS_RDONLY so that the answers are the daemon's own (a bind flag alone
// can be undone by a privileged container), and against a ro bind mount
// of a native directory (MS_BIND then MS_REMOUNT|MS_RDONLY).

// permMount is one daemon configuration whose views the matrix checks.
type permMount struct {
	name string
	opts DaemonOptions
	// roOrder, when set, tolerates (logs, does not fail) a difference on
	// the plainly bound ro view with these answers. Only for a known
	// difference of that mount; the test fails when none is left.
	roOrder func(view, native int) bool
	// roBoundOrder is the same for the read-only bound ro view.
	roBoundOrder func(view, native int) bool
}

// permMounts are the mounts under test: the kernel's default_permissions,
// and the daemon's own checks.
var permMounts = []permMount{
	{name: "default_permissions", opts: DaemonOptions{ExtraArgs: []string{"--kernel-permissions"}}, roOrder: permROOrderToday},
	{name: "daemon", opts: DaemonOptions{}, roBoundOrder: permROBoundOrderDaemon},
}

// permROBoundOrderDaemon is the known difference of the daemon-checked
// mount on a ro view bound read-only: where a native read-only bind
// answers EACCES the view answers EROFS. The kernel checks the bind's
// read-only flag before it asks the daemon anything, and checks the
// permission bits first only with default_permissions: open for writing
// and truncate(2) by a caller without write permission (may_open and
// vfs_truncate ask nobody on a FUSE mount without it, then the write
// access to the mount fails), and unlink, rmdir and rename in a
// directory the caller may not search (the search of the last directory
// of the path is the kernel's own, and do_unlinkat and do_renameat2 take
// the mount's write access before the LOOKUP that the daemon checks).
// Both answers refuse; nothing is allowed that should not be.
func permROBoundOrderDaemon(view, native int) bool {
	return native == int(syscall.EACCES) && view == int(syscall.EROFS)
}

// permROOrderToday is the known difference of the default_permissions mount on a ro view
// bound without MS_RDONLY: the kernel checks permissions itself
// (default_permissions) before it asks the daemon, and the daemon's EROFS
// is not known to access(2); so where a ro mount answers EROFS the view
// answers the kernel's EACCES or EPERM (chmod, utimes, create, unlink,
// rename, O_TRUNC by a caller without the right) or success (access W_OK
// by root, the owner, or anyone the mode lets write). The daemon's own
// checks answer EROFS in the kernel's order instead. A container never
// sees it: mountd binds ro views with MOUNT_ATTR_RDONLY (the "ro-bound"
// matrix, which this mount matches exactly).
func permROOrderToday(view, native int) bool {
	return native == int(syscall.EROFS) && view != int(syscall.EROFS)
}

// permCaller is who runs an operation.
type permCaller struct {
	name     string
	uid, gid uint32
	groups   []uint32
}

// permOp is one system call the helper child makes; A and B are absolute
// paths (A is the target, B the second path of rename and link).
type permOp struct {
	Op   string
	A, B string
	Arg  int
	U, G int
}

// permCase is one row: a fixture (a file or a directory of a mode in a
// case directory of its own), an operation on it and a caller.
type permCase struct {
	dir    bool
	mode   uint32
	op     string
	caller int
}

func (c permCase) name(callers []permCaller) string {
	kind := "file"
	if c.dir {
		kind = "dir"
	}
	return fmt.Sprintf("%s%04o/%s/%s", kind, c.mode, callers[c.caller].name, c.op)
}

// The operations, by name: each maps to a permOp on a case directory
// laid out as
//
//	k<i>/t         the target: a file ("x") or a directory holding
//	               t/f (file 0644), t/s (empty directory 0755) and
//	               t/w/z (directory 0755, file 0644); t has the
//	               attribute user.fixture
//	k<i>/o         an open directory (0777) holding o/x (file 0644)
//
// and the owner/modes shown by the view.
var (
	permFileOps = []string{
		"access-R", "access-W", "access-X", "open-R", "open-W", "open-RW", "open-trunc",
		"truncate", "chmod", "chmod-suid", "chmod-sgid", "chown-self", "chown-root",
		"utimes-explicit", "utimes-now", "link-to",
		"open-R-trunc", "exec", "setxattr", "getxattr",
	}
	permDirOps = []string{
		"access-R", "access-W", "access-X", "readdir", "search", "open-entry",
		"create", "mkdir", "symlink", "unlink", "rmdir", "rename-within", "rename-out",
		"rename-in", "rename-dir-out", "link-in", "chmod", "chmod-sgid", "chown-self", "chown-root", "utimes-explicit",
		"utimes-now",
		"chdir", "search-warm", "open-entry-warm", "readdir-warm", "rename-self-out", "setxattr", "getxattr", "removexattr",
	}
	permFileModes = []uint32{0o000, 0o100, 0o111, 0o007, 0o070, 0o600, 0o604, 0o640, 0o644, 0o700, 0o750, 0o755, 0o777}
	permDirModes  = []uint32{0o000, 0o100, 0o300, 0o500, 0o600, 0o700, 0o711, 0o007, 0o070, 0o750, 0o755, 0o777, 0o1777, 0o1770, 0o1755}
	// permROOps are the operations of the ro matrix: every mutation, and
	// the checks that must not mutate (reads answer as on the rw view).
	permROFileOps = []string{"access-R", "access-W", "open-R", "open-W", "open-trunc", "truncate", "chmod", "chown-self", "utimes-explicit", "utimes-now", "link-to", "open-R-trunc", "exec", "setxattr", "getxattr"}
	permRODirOps  = []string{"access-W", "readdir", "search", "create", "mkdir", "unlink", "rmdir", "rename-within", "rename-in", "chmod", "utimes-now", "chdir", "search-warm", "setxattr"}
	permROFileMds = []uint32{0o000, 0o600, 0o644, 0o666}
	permRODirMds  = []uint32{0o000, 0o500, 0o755, 0o777, 0o1777}
)

// permSyscall builds the system call of op on case directory k.
func permSyscall(op string, k string, view permCaller) permOp {
	t := filepath.Join(k, "t")
	switch op {
	case "access-R":
		return permOp{Op: "access", A: t, Arg: unix.R_OK}
	case "access-W":
		return permOp{Op: "access", A: t, Arg: unix.W_OK}
	case "access-X":
		return permOp{Op: "access", A: t, Arg: unix.X_OK}
	case "open-R":
		return permOp{Op: "open", A: t, Arg: unix.O_RDONLY}
	case "open-W":
		return permOp{Op: "open", A: t, Arg: unix.O_WRONLY}
	case "open-RW":
		return permOp{Op: "open", A: t, Arg: unix.O_RDWR}
	case "open-trunc":
		return permOp{Op: "open", A: t, Arg: unix.O_WRONLY | unix.O_TRUNC}
	case "truncate":
		return permOp{Op: "truncate", A: t}
	case "chmod":
		return permOp{Op: "chmod", A: t, Arg: 0o750}
	case "chmod-suid":
		return permOp{Op: "chmod", A: t, Arg: 0o4755}
	case "chmod-sgid":
		return permOp{Op: "chmod", A: t, Arg: 0o2755}
	case "chown-self":
		return permOp{Op: "chown", A: t, U: int(view.uid), G: int(view.gid)}
	case "chown-root":
		return permOp{Op: "chown", A: t, U: 0, G: 0}
	case "utimes-explicit":
		return permOp{Op: "utimes", A: t, Arg: 1}
	case "utimes-now":
		return permOp{Op: "utimes", A: t, Arg: 0}
	case "link-to":
		return permOp{Op: "link", A: t, B: filepath.Join(k, "o", "l")}
	case "readdir":
		return permOp{Op: "readdir", A: t}
	case "search":
		return permOp{Op: "stat", A: filepath.Join(t, "f")}
	case "open-entry":
		return permOp{Op: "open", A: filepath.Join(t, "f"), Arg: unix.O_RDONLY}
	case "create":
		return permOp{Op: "create", A: filepath.Join(t, "new")}
	case "mkdir":
		return permOp{Op: "mkdir", A: filepath.Join(t, "newdir")}
	case "symlink":
		return permOp{Op: "symlink", A: filepath.Join(t, "sl")}
	case "unlink":
		return permOp{Op: "unlink", A: filepath.Join(t, "f")}
	case "rmdir":
		return permOp{Op: "rmdir", A: filepath.Join(t, "s")}
	case "rename-within":
		return permOp{Op: "rename", A: filepath.Join(t, "f"), B: filepath.Join(t, "g")}
	case "rename-out":
		return permOp{Op: "rename", A: filepath.Join(t, "f"), B: filepath.Join(k, "o", "g")}
	case "rename-in":
		return permOp{Op: "rename", A: filepath.Join(k, "o", "x"), B: filepath.Join(t, "x")}
	case "rename-dir-out":
		return permOp{Op: "rename", A: filepath.Join(t, "s"), B: filepath.Join(k, "o", "s2")}
	case "link-in":
		return permOp{Op: "link", A: filepath.Join(k, "o", "x"), B: filepath.Join(t, "l")}
	case "open-R-trunc":
		return permOp{Op: "open", A: t, Arg: unix.O_RDONLY | unix.O_TRUNC}
	case "exec":
		return permOp{Op: "exec", A: t}
	case "setxattr":
		return permOp{Op: "setxattr", A: t}
	case "getxattr":
		return permOp{Op: "getxattr", A: t}
	case "removexattr":
		return permOp{Op: "removexattr", A: t}
	case "chdir":
		return permOp{Op: "chdir", A: t}
	case "search-warm":
		return permOp{Op: "stat", A: filepath.Join(t, "f")}
	case "open-entry-warm":
		return permOp{Op: "open", A: filepath.Join(t, "w", "z"), Arg: unix.O_RDONLY}
	case "readdir-warm":
		return permOp{Op: "readdir", A: filepath.Join(t, "w")}
	case "rename-self-out":
		return permOp{Op: "rename", A: t, B: filepath.Join(k, "o", "t2")}
	}
	panic("unknown op " + op)
}

// permHelperEnv makes the test binary a helper child: it reads permOps
// as JSON on stdin, makes each system call and prints the errnos (0 for
// success) as JSON. The parent starts it with the caller's credentials.
const permHelperEnv = "PERM_MATRIX_HELPER"

func init() {
	if os.Getenv(permHelperEnv) != "1" {
		return
	}
	var ops []permOp
	if err := json.NewDecoder(os.Stdin).Decode(&ops); err != nil {
		fmt.Fprintln(os.Stderr, "perm helper:", err)
		os.Exit(2)
	}
	res := make([]int, len(ops))
	for i, op := range ops {
		res[i] = permErrno(permDo(op))
	}
	if err := json.NewEncoder(os.Stdout).Encode(res); err != nil {
		os.Exit(2)
	}
	os.Exit(0)
}

func permErrno(err error) int {
	if err == nil {
		return 0
	}
	var e syscall.Errno
	if errors.As(err, &e) {
		return int(e)
	}
	return -1
}

// permDo makes one system call (and closes what it opened).
func permDo(op permOp) error {
	switch op.Op {
	case "access":
		return unix.Faccessat(unix.AT_FDCWD, op.A, uint32(op.Arg), 0)
	case "open", "readdir", "create":
		flags := op.Arg | unix.O_CLOEXEC
		if op.Op == "readdir" {
			flags = unix.O_RDONLY | unix.O_DIRECTORY | unix.O_CLOEXEC
		}
		if op.Op == "create" {
			flags = unix.O_WRONLY | unix.O_CREAT | unix.O_EXCL | unix.O_CLOEXEC
		}
		fd, err := unix.Open(op.A, flags, 0o644)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		if op.Op == "readdir" {
			buf := make([]byte, 4096)
			_, err = unix.Getdents(fd, buf)
		}
		return err
	case "stat":
		var st unix.Stat_t
		return unix.Lstat(op.A, &st)
	case "truncate":
		return unix.Truncate(op.A, 0)
	case "chmod":
		return unix.Chmod(op.A, uint32(op.Arg))
	case "chown":
		return unix.Lchown(op.A, op.U, op.G)
	case "utimes":
		ts := []unix.Timespec{{Nsec: unix.UTIME_NOW}, {Nsec: unix.UTIME_NOW}}
		if op.Arg == 1 {
			ts = []unix.Timespec{{Sec: 1000000000}, {Sec: 1000000000}}
		}
		return unix.UtimesNanoAt(unix.AT_FDCWD, op.A, ts, 0)
	case "mkdir":
		return unix.Mkdir(op.A, 0o755)
	case "symlink":
		return unix.Symlink("f", op.A)
	case "unlink":
		return unix.Unlink(op.A)
	case "rmdir":
		return unix.Rmdir(op.A)
	case "rename":
		return unix.Rename(op.A, op.B)
	case "link":
		return unix.Linkat(unix.AT_FDCWD, op.A, unix.AT_FDCWD, op.B, 0)
	case "exec":
		// The fixture is not an executable: ENOEXEC once the kernel
		// and the file system let the exec through.
		return unix.Exec(op.A, []string{op.A}, nil)
	case "setxattr":
		return unix.Setxattr(op.A, "user.perm", []byte("v"), 0)
	case "getxattr":
		_, err := unix.Getxattr(op.A, "user.fixture", make([]byte, 64))
		return err
	case "removexattr":
		return unix.Removexattr(op.A, "user.fixture")
	case "chdir":
		if err := unix.Chdir(op.A); err != nil {
			return err
		}
		return unix.Chdir("/")
	}
	return fmt.Errorf("unknown op %q", op.Op)
}

// permHelper copies the test binary where every caller may run it.
func permHelper(t *testing.T, dir string) string {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	in, err := os.Open(self)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	p := filepath.Join(dir, "perm-helper")
	out, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_EXCL, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
	return p
}

// permRun runs ops as the caller in one helper child and returns the
// errnos.
func permRun(t *testing.T, helper string, c permCaller, ops []permOp) []int {
	t.Helper()
	in, err := json.Marshal(ops)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(helper)
	cmd.Dir = "/"
	cmd.Env = []string{permHelperEnv + "=1", "PATH=/usr/bin:/bin"}
	groups := c.groups
	if groups == nil {
		groups = []uint32{}
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: c.uid, Gid: c.gid, Groups: groups}}
	var out, errb bytes.Buffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = bytes.NewReader(in), &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("helper as %s: %v\n%s", c.name, err, errb.String())
	}
	var res []int
	if err := json.Unmarshal(out.Bytes(), &res); err != nil || len(res) != len(ops) {
		t.Fatalf("helper as %s printed %q (%v), want %d errnos", c.name, out.String(), err, len(ops))
	}
	return res
}

// permFixture builds case directory k<i> below root (as root) and
// returns its path.
func permFixture(t *testing.T, root string, i int, c permCase) string {
	t.Helper()
	k := filepath.Join(root, fmt.Sprintf("k%d", i))
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.Mkdir(k, 0o755))
	must(os.Chmod(k, 0o755))
	o := filepath.Join(k, "o")
	must(os.Mkdir(o, 0o777))
	must(os.WriteFile(filepath.Join(o, "x"), []byte("x"), 0o644))
	tp := filepath.Join(k, "t")
	if c.dir {
		must(os.Mkdir(tp, 0o755))
		must(os.WriteFile(filepath.Join(tp, "f"), []byte("f"), 0o644))
		must(os.Mkdir(filepath.Join(tp, "s"), 0o755))
		must(os.Mkdir(filepath.Join(tp, "w"), 0o755))
		must(os.WriteFile(filepath.Join(tp, "w", "z"), []byte("z"), 0o644))
		must(os.Chmod(filepath.Join(tp, "f"), 0o644))
		must(os.Chmod(filepath.Join(tp, "w"), 0o755))
		must(os.Chmod(filepath.Join(tp, "w", "z"), 0o644))
	} else {
		must(os.WriteFile(tp, []byte("x"), 0o644))
	}
	must(os.Chmod(o, 0o777))
	must(os.Chmod(filepath.Join(o, "x"), 0o644))
	must(unix.Setxattr(tp, "user.fixture", []byte("f"), 0))
	must(unix.Chmod(tp, c.mode))
	return k
}

// permMirror gives every entry below native the owner and mode that the
// same entry shows below view.
func permMirror(t *testing.T, view, native string) {
	t.Helper()
	err := filepath.Walk(view, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(view, p)
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		np := filepath.Join(native, rel)
		if err := unix.Lchown(np, int(st.Uid), int(st.Gid)); err != nil {
			return err
		}
		// chown clears set-id bits: chmod after it.
		return unix.Chmod(np, st.Mode&0o7777)
	})
	if err != nil {
		t.Fatalf("mirroring %s onto %s: %v", view, native, err)
	}
	// The comparison rests on both sides showing the same thing.
	if vt, nt := permShown(t, view), permShown(t, native); vt != nt {
		t.Fatalf("native tree does not show what the view shows:\nview:\n%s\nnative:\n%s", vt, nt)
	}
}

// permShown lists every entry's type, mode and owner below root.
func permShown(t *testing.T, root string) string {
	t.Helper()
	var lines []string
	filepath.Walk(root, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			t.Fatal(err)
		}
		rel, _ := filepath.Rel(root, p)
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			t.Fatal(err)
		}
		lines = append(lines, fmt.Sprintf("%s %o %d:%d", rel, st.Mode, st.Uid, st.Gid))
		return nil
	})
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

// permStateOps are the operations after which the target's mode and
// owner are compared too (as root, after every caller's child is done).
var permStateOps = map[string]bool{"chmod": true, "chmod-suid": true, "chmod-sgid": true, "chown-self": true, "chown-root": true}

// permState is the target's mode bits and owner.
func permState(t *testing.T, p string) (mode, uid, gid uint32, s string) {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		t.Fatalf("lstat %s: %v", p, err)
	}
	return st.Mode & 0o7777, st.Uid, st.Gid, fmt.Sprintf("%04o %d:%d", st.Mode&0o7777, st.Uid, st.Gid)
}

// permIntended says why the view's resulting state may differ from the
// native one: both are documented rules of the design, not permission
// answers. Errnos never get such an exception.
//   - chown in rw/wd views is a successful no-op (ownership is unified:
//     every entry shows the view's owner), so tar, cp -a and rsync as
//     root work; the kernel's own chown checks still answer first.
//   - no suid/sgid bit is ever stored through a view, so chmod 4755 or
//     2755 stores and shows 0755 where the kernel keeps the bit.
func permIntended(vmode, vuid, vgid, nmode, nuid, ngid uint32, owner permCaller) string {
	var why []string
	if vuid != nuid || vgid != ngid {
		if vuid != owner.uid || vgid != owner.gid {
			return ""
		}
		why = append(why, "chown is a no-op in views")
	}
	if vmode != nmode {
		if vmode != nmode&^0o6000 {
			return ""
		}
		why = append(why, "no set-id bit is stored through a view")
	}
	return strings.Join(why, "; ")
}

// permMatrix runs cases against the view root and the native root (both
// already hold the fixtures) and reports every differing errno.
// permDiff is one case whose answers differ.
type permDiff struct {
	line         string
	view, native int
}

// For the operations of permStateOps the resulting mode and owner are
// compared as well; intended differences (permIntended) go to intended.
func permMatrix(t *testing.T, label, helper string, callers []permCaller, cases []permCase, viewRoot, nativeRoot string, intended *[]string) (diffs []permDiff, answers map[int]int) {
	t.Helper()
	owner := callers[1]
	answers = map[int]int{}
	// The "-warm" cases first make the same walk as root: the kernel then
	// holds the entries, and a walk through them by another caller must
	// still be refused where the kernel would refuse it.
	var wv, wn []permOp
	for i, pc := range cases {
		if strings.HasSuffix(pc.op, "-warm") {
			k := fmt.Sprintf("k%d", i)
			wv = append(wv, permSyscall(pc.op, filepath.Join(viewRoot, k), owner))
			wn = append(wn, permSyscall(pc.op, filepath.Join(nativeRoot, k), owner))
		}
	}
	if len(wv) > 0 {
		for j, r := range permRun(t, helper, callers[0], wv) {
			if r != 0 {
				t.Fatalf("%s: warming %s as root: %s", label, wv[j].A, permErr(r))
			}
		}
		permRun(t, helper, callers[0], wn)
	}
	for ci, c := range callers {
		var idx []int
		var vops, nops []permOp
		for i, pc := range cases {
			if pc.caller != ci {
				continue
			}
			k := fmt.Sprintf("k%d", i)
			idx = append(idx, i)
			vops = append(vops, permSyscall(pc.op, filepath.Join(viewRoot, k), owner))
			nops = append(nops, permSyscall(pc.op, filepath.Join(nativeRoot, k), owner))
		}
		vres := permRun(t, helper, c, vops)
		nres := permRun(t, helper, c, nops)
		for j, i := range idx {
			answers[nres[j]]++
			name := cases[i].name(callers)
			if vres[j] != nres[j] {
				line := fmt.Sprintf("%s %s: view %s, native %s", label, name, permErr(vres[j]), permErr(nres[j]))
				diffs = append(diffs, permDiff{line, vres[j], nres[j]})
				continue
			}
			if !permStateOps[cases[i].op] {
				continue
			}
			k := fmt.Sprintf("k%d", i)
			vm, vu, vg, vs := permState(t, filepath.Join(viewRoot, k, "t"))
			nm, nu, ng, ns := permState(t, filepath.Join(nativeRoot, k, "t"))
			if vs == ns {
				continue
			}
			line := fmt.Sprintf("%s %s: both %s, then view shows %s, native %s", label, name, permErr(vres[j]), vs, ns)
			if why := permIntended(vm, vu, vg, nm, nu, ng, owner); why != "" {
				*intended = append(*intended, line+" ("+why+")")
				continue
			}
			diffs = append(diffs, permDiff{line: line})
		}
	}
	return diffs, answers
}

func permErr(n int) string {
	if n == 0 {
		return "ok"
	}
	if n < 0 {
		return "not an errno"
	}
	return unix.ErrnoName(syscall.Errno(n))
}

// permCases is the product of modes, operations and callers.
func permCases(fileModes, dirModes []uint32, fileOps, dirOps []string, ncallers int) []permCase {
	var cs []permCase
	for ci := 0; ci < ncallers; ci++ {
		for _, m := range fileModes {
			for _, op := range fileOps {
				cs = append(cs, permCase{mode: m, op: op, caller: ci})
			}
		}
		for _, m := range dirModes {
			for _, op := range dirOps {
				cs = append(cs, permCase{dir: true, mode: m, op: op, caller: ci})
			}
		}
	}
	return cs
}

// permUser owns the folder of the matrix.
const permUser = "5a4b3c2d1e0f4a5b8c7d6e5f40312233"

// TestPermMatrix runs the matrix against each mount under test.
func TestPermMatrix(t *testing.T) {
	for _, m := range permMounts {
		t.Run(m.name, func(t *testing.T) { permMatrixOn(t, m) })
	}
}

func permMatrixOn(t *testing.T, m permMount) {
	start := time.Now()
	d := StartDaemon(t, m.opts)
	var f api.Folder
	d.JSON(&f, "create", "perm", "local", "--user", permUser, "--permission", "wd")
	d.OK("view", "add", "perm-ro", "ro", f.ID, "--mode", "ro")
	open := dtOpenDir(t)
	helper := permHelper(t, open)
	wd := dtBind(t, open, filepath.Join(d.MountPoint, "users", permUser, "perm"))
	ro := dtBind(t, open, filepath.Join(d.MountPoint, "sessions", "perm-ro", "ro"))

	var rootSt unix.Stat_t
	if err := unix.Stat(wd, &rootSt); err != nil {
		t.Fatal(err)
	}
	vu, vg := rootSt.Uid, rootSt.Gid
	if vu == 0 || vg == 0 {
		t.Fatalf("the view shows owner %d:%d; the matrix needs a non-root owner", vu, vg)
	}
	callers := []permCaller{
		{name: "root", uid: 0, gid: 0},
		{name: "owner", uid: vu, gid: vg},
		{name: "group-supp", uid: vu + 1, gid: vg + 1, groups: []uint32{vg}},
		{name: "group-primary", uid: vu + 2, gid: vg},
		{name: "other", uid: vu + 3, gid: vg + 3, groups: []uint32{vg + 4}},
		// The owner outside the owning group: chmod 2755 by it makes
		// the kernel drop the sgid bit silently.
		{name: "owner-outgroup", uid: vu, gid: vg + 5},
	}

	native := filepath.Join(open, "native")
	sets := []string{"rw", "ro", "ro-bound"}
	if err := os.Mkdir(native, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, p := range sets {
		for _, root := range []string{native, wd} {
			if err := os.Mkdir(filepath.Join(root, p), 0o755); err != nil {
				t.Fatal(err)
			}
		}
	}

	// rw (wd view) matrix.
	rwCases := permCases(permFileModes, permDirModes, permFileOps, permDirOps, len(callers))
	for i, c := range rwCases {
		permFixture(t, filepath.Join(wd, "rw"), i, c)
		permFixture(t, filepath.Join(native, "rw"), i, c)
	}
	permMirror(t, filepath.Join(wd, "rw"), filepath.Join(native, "rw"))

	// ro matrices: fixtures written through the wd view, used through
	// the ro view; the native side is a ro bind mount. "ro" binds the ro
	// view plainly (the daemon's own answers: what a privileged container
	// that removed the bind flag, or the host, sees); "ro-bound" binds it
	// read-only as mountd publishes ro views into containers.
	roCases := permCases(permROFileMds, permRODirMds, permROFileOps, permRODirOps, len(callers))
	for _, set := range sets[1:] {
		for i, c := range roCases {
			permFixture(t, filepath.Join(wd, set), i, c)
			permFixture(t, filepath.Join(native, set), i, c)
		}
		permMirror(t, filepath.Join(ro, set), filepath.Join(native, set))
	}
	roBound := permBindRO(t, open, ro, "bind-ro-view")
	nativeRO := permBindRO(t, open, native, "bind-ro-native")
	t.Logf("fixtures for %d rw and 2x%d ro cases built in %v", len(rwCases), len(roCases), time.Since(start).Round(time.Millisecond))

	var diffs, tolerated, intended []string
	answers := map[string]map[int]int{}
	for _, r := range []struct {
		label       string
		cases       []permCase
		view, nat   string
		mayDiffer   func(view, native int) bool
		whyTolerate string
	}{
		{"rw", rwCases, filepath.Join(wd, "rw"), filepath.Join(native, "rw"), nil, ""},
		{"ro", roCases, filepath.Join(ro, "ro"), filepath.Join(nativeRO, "ro"), m.roOrder, "the kernel's checks come before the daemon's EROFS on a ro view bound without MS_RDONLY"},
		{"ro-bound", roCases, filepath.Join(roBound, "ro-bound"), filepath.Join(nativeRO, "ro-bound"), m.roBoundOrder, "EROFS from the bind flag before the daemon is asked"},
	} {
		d, a := permMatrix(t, r.label, helper, callers, r.cases, r.view, r.nat, &intended)
		answers[r.label] = a
		for _, x := range d {
			if r.mayDiffer != nil && r.mayDiffer(x.view, x.native) {
				tolerated = append(tolerated, x.line+" ("+r.whyTolerate+")")
				continue
			}
			diffs = append(diffs, x.line)
		}
		if r.mayDiffer != nil {
			n := 0
			for _, x := range d {
				if r.mayDiffer(x.view, x.native) {
					n++
				}
			}
			if n == 0 {
				t.Errorf("%s: no case shows the known difference (%s) any more: drop the tolerance in permMounts", r.label, r.whyTolerate)
			}
		}
	}

	// The matrix must exercise grants and each kind of refusal, or it
	// proves nothing.
	for label, errnos := range map[string][]syscall.Errno{
		"rw":       {0, syscall.EACCES, syscall.EPERM},
		"ro":       {0, syscall.EACCES, syscall.EROFS},
		"ro-bound": {0, syscall.EACCES, syscall.EROFS},
	} {
		for _, e := range errnos {
			if answers[label][int(e)] == 0 {
				t.Errorf("%s: no native case answered %s; the matrix does not exercise it", label, permErr(int(e)))
			}
		}
		t.Logf("%s native answers: %s", label, permCount(answers[label]))
	}
	for _, l := range intended {
		t.Logf("intended difference: %s", l)
	}
	for _, l := range tolerated {
		t.Logf("known ordering difference (a refusal either way): %s", l)
	}
	for _, l := range diffs {
		t.Errorf("difference: %s", l)
	}
	t.Logf("%s: %d cases (%d rw, 2x%d ro), %d differences, %d known ro-order differences, %d intended state differences, %v",
		m.name, len(rwCases)+2*len(roCases), len(rwCases), len(roCases), len(diffs), len(tolerated), len(intended), time.Since(start).Round(time.Millisecond))
}

// permBindRO bind-mounts src read-only on dir/name; Cleanup unmounts it.
func permBindRO(t *testing.T, dir, src, name string) string {
	t.Helper()
	dst := bindAt(t, src, filepath.Join(dir, name))
	if err := syscall.Mount("", dst, "", syscall.MS_BIND|syscall.MS_REMOUNT|syscall.MS_RDONLY, ""); err != nil {
		t.Fatalf("remount %s ro: %v", dst, err)
	}
	return dst
}

func permCount(a map[int]int) string {
	var keys []int
	for k := range a {
		keys = append(keys, k)
	}
	sort.Ints(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s=%d", permErr(k), a[k]))
	}
	return strings.Join(parts, " ")
}
