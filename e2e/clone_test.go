package e2e

import (
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vfolder/vfolder/api"
)

const (
	cloneUser = "3c2b1a0f4e9d4c8b9a7f6e5d4c3b2a19"
	purgeUser = "8f7e6d5c4b3a4f2e9d1c0b9a8f7e6d5c"
)

// cloneEntry is what the clone test compares of one object.
type cloneEntry struct {
	Mode     fs.FileMode
	UID, GID uint32
	Sum      [32]byte
	Target   string
	Xattr    string
	Mtime    int64
	Nlink    uint64
}

// cloneSnapshot describes every entry below root, and the groups of names
// that share an inode.
func cloneSnapshot(t *testing.T, root string) (map[string]cloneEntry, map[string]string) {
	t.Helper()
	out := map[string]cloneEntry{}
	firstName := map[uint64]string{}
	linkOf := map[string]string{} // name -> first name of its inode (hard links)
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		e := cloneEntry{Mode: fi.Mode(), UID: st.Uid, GID: st.Gid, Nlink: uint64(st.Nlink)}
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			e.Target, _ = os.Readlink(p)
		case fi.Mode().IsRegular():
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			e.Sum = sha256.Sum256(b)
			e.Mtime = st.Mtim.Nano()
			if st.Nlink > 1 {
				if first, ok := firstName[st.Ino]; ok {
					linkOf[rel] = first
				} else {
					firstName[st.Ino] = rel
				}
			}
		case fi.IsDir():
			e.Mtime = st.Mtim.Nano()
			if rel == "." {
				e.Nlink = 0
			}
		}
		if fi.Mode().IsRegular() || fi.IsDir() {
			buf := make([]byte, 256)
			if n, err := unix.Lgetxattr(p, "user.tag", buf); err == nil {
				e.Xattr = string(buf[:n])
			}
		}
		out[rel] = e
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out, linkOf
}

// charge is what the quota ledger must charge for the tree below root:
// file sizes and user.* xattrs (each inode once), symlink target
// lengths, directory sizes (the root's included); inodes without the root.
func charge(t *testing.T, root string) (bytesN, inodes, data int64) {
	t.Helper()
	seen := map[uint64]bool{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		if st.Mode&unix.S_IFMT != unix.S_IFDIR && st.Nlink > 1 {
			if seen[st.Ino] {
				return nil
			}
			seen[st.Ino] = true
		}
		if p != root {
			inodes++
		}
		bytesN += st.Size
		if st.Mode&unix.S_IFMT == unix.S_IFREG {
			data += st.Size
		}
		if t := st.Mode & unix.S_IFMT; t == unix.S_IFREG || t == unix.S_IFDIR {
			bytesN += userXattrBytes(p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return
}

func userXattrBytes(p string) int64 {
	buf := make([]byte, 4096)
	n, err := unix.Llistxattr(p, buf)
	if err != nil {
		return 0
	}
	var sum int64
	for _, name := range strings.Split(string(buf[:n]), "\x00") {
		if !strings.HasPrefix(name, "user.") {
			continue
		}
		vn, err := unix.Lgetxattr(p, name, nil)
		if err == nil {
			sum += int64(len(name) + vn)
		}
	}
	return sum
}

// buildCloneSource fills root with files regular files (big ones first,
// adding up to about total bytes), directories with every mode the test
// compares, symlinks (relative, absolute, dangling), hard links and
// user xattrs, all owned by the storage owner as if written through a
// view.
func buildCloneSource(t *testing.T, root string, files int, total int64) {
	t.Helper()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	rng := rand.New(rand.NewPCG(1, 2))
	pool := make([]byte, 8<<20)
	for i := range pool {
		pool[i] = byte(rng.Uint32())
	}
	const big = 38
	bigSize := (total - int64(files-big)*8192) / big
	modes := []os.FileMode{0o644, 0o600, 0o755, 0o640}
	for i := 0; i < files; i++ {
		dir := filepath.Join(root, fmt.Sprintf("d%03d", i%100))
		if i%100 == 7 {
			dir = filepath.Join(dir, "deeper", "still")
		}
		must(os.MkdirAll(dir, 0o755))
		size := int64(rng.IntN(16384))
		if i < big {
			size = bigSize
		}
		f, err := os.OpenFile(filepath.Join(dir, fmt.Sprintf("f%05d", i)), os.O_CREATE|os.O_WRONLY|os.O_EXCL, 0o600)
		must(err)
		off := (i * 4099) % (len(pool) / 2)
		for left := size; left > 0; {
			n := min(left, int64(len(pool)/2))
			_, err := f.Write(pool[off : off+int(n)])
			must(err)
			left -= n
		}
		must(f.Chmod(modes[i%len(modes)]))
		must(f.Close())
	}
	must(os.Mkdir(filepath.Join(root, "sticky"), 0o755))
	must(os.Chmod(filepath.Join(root, "sticky"), 0o1777))
	must(os.Chmod(filepath.Join(root, "d042"), 0o700))
	must(os.Mkdir(filepath.Join(root, "links"), 0o755))
	must(os.Symlink("../d001/f00001", filepath.Join(root, "links", "rel")))
	must(os.Symlink("/etc/hostname", filepath.Join(root, "links", "abs")))
	must(os.Symlink("no/such/target", filepath.Join(root, "links", "dangling")))
	must(os.Symlink("../d002", filepath.Join(root, "links", "dir")))
	for i := 0; i < 20; i++ {
		src := filepath.Join(root, "d003", fmt.Sprintf("f%05d", 3+100*i))
		must(os.Link(src, filepath.Join(root, "sticky", fmt.Sprintf("h%02d", i))))
	}
	must(unix.Setxattr(filepath.Join(root, "d004", "f00004"), "user.tag", []byte("file-tag"), 0))
	must(unix.Setxattr(filepath.Join(root, "d005"), "user.tag", []byte("dir-tag"), 0))
	old := time.Date(2021, 3, 4, 5, 6, 7, 0, time.UTC)
	must(os.Chtimes(filepath.Join(root, "d006", "f00006"), old, old))
	must(filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, StorageID, StorageID)
	}))
	// Directory times last: the entries made above changed them.
	must(os.Chtimes(filepath.Join(root, "d008"), old, old))
}

// folderDirs lists the folder directories below a scope's directory on
// the volume (<scope>/<aa>/<bb>/<rest>).
func folderDirs(t *testing.T, vol, scopeHex string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(vol, scopeHex, "*", "*", "*"))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func folderInfo(d *Daemon, id string) (api.Folder, bool) {
	d.t.Helper()
	r := d.CLI("--json", "info", id)
	if r.Code != 0 {
		if strings.Contains(r.Stderr, "no folder has id") || strings.Contains(r.Stderr, "not found") {
			return api.Folder{}, false
		}
		d.t.Fatalf("info %s: %s", id, r)
	}
	var f api.Folder
	if err := json.Unmarshal([]byte(r.Stdout), &f); err != nil {
		d.t.Fatal(err)
	}
	return f, true
}

// settled waits until no recovery check runs on the scope and returns it.
func settled(t *testing.T, d *Daemon, user string) api.QuotaScope {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		q := dqScope(d, user)
		if !q.Checking || time.Now().After(deadline) {
			return q
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestClone: a 10k-file, 1 GiB cloneable folder is copied exactly,
// charged exactly, refused before any byte when it cannot fit, and a
// SIGKILL of the daemon mid-clone leaves a finished clone or no trace.
func TestClone(t *testing.T) {
	d := StartDaemon(t, DaemonOptions{})
	vol := d.Volumes["local"]
	var src api.Folder
	d.JSON(&src, "create", "model", "local", "--user", cloneUser, "--mode", "model", "--cloneable")
	t0 := time.Now()
	buildCloneSource(t, src.Path, 10000, 1<<30)
	d.OK("quota-scope", "check", "local", cloneUser, "-t", "user", "--repair")
	srcBytes, srcInodes, srcData := charge(t, src.Path)
	rootSize := dqSize(t, src.Path)
	t.Logf("source: %d bytes charged, %d inodes, %d data bytes; built in %v", srcBytes, srcInodes, srcData, time.Since(t0))
	if srcData < 1<<30 || srcInodes < 10000 {
		t.Fatalf("the source is smaller than the test asks: %d bytes, %d inodes", srcData, srcInodes)
	}
	before := dqScope(d, cloneUser)
	if before.UsedBytes != srcBytes || before.UsedInodes != srcInodes {
		t.Fatalf("the scope holds %d bytes / %d inodes; the source alone is %d / %d", before.UsedBytes, before.UsedInodes, srcBytes, srcInodes)
	}
	wantSnap, wantLinks := cloneSnapshot(t, src.Path)
	if len(wantLinks) != 20 {
		t.Fatalf("the source has %d extra hard links, want 20", len(wantLinks))
	}

	// 1. Refused before anything is made: one byte short.
	need := srcBytes - rootSize // the copy's entries; its root is a new folder's root
	d.OK("quota-scope", "set", "local", cloneUser, strconv.FormatInt(before.UsedBytes+need-1, 10), "-t", "user")
	r := d.CLI("clone", src.ID, "refused", "--user", cloneUser)
	if r.Code != 1 || !strings.Contains(r.Stderr, strconv.FormatInt(need, 10)+" bytes") || !strings.Contains(r.Stderr, fmt.Sprintf("has %d free", need-1)) {
		t.Errorf("clone one byte beyond the limit: %s; want exit 1 naming %d bytes needed and %d free", r, need, need-1)
	}
	for _, f := range listAll(d) {
		if f.Name == "refused" {
			t.Errorf("a refused clone left a folder: %+v", f)
		}
	}
	if dirs := folderDirs(t, vol, cloneUser); len(dirs) != 1 {
		t.Errorf("a refused clone left directories: %v", dirs)
	}
	if q := dqScope(d, cloneUser); q.UsedBytes != before.UsedBytes || q.UsedInodes != before.UsedInodes {
		t.Errorf("usage after a refused clone: %+v; before %+v", q, before)
	}
	d.OK("quota-scope", "unset", "local", cloneUser, "-t", "user")

	// 2. A clone in the background: status cloning with its progress,
	// then ready.
	var cp api.Folder
	t1 := time.Now()
	d.JSON(&cp, "clone", src.ID, "copy", "--user", cloneUser)
	if cp.Status != "cloning" || cp.Progress == nil || cp.Progress.Op != api.OpClone || cp.Progress.FilesTotal != srcInodes || cp.Progress.BytesTotal != srcData {
		t.Fatalf("clone answered %+v (progress %+v); want status cloning, %d files and %d bytes to copy", cp, cp.Progress, srcInodes, srcData)
	}
	midway := 0
	for {
		f, ok := folderInfo(d, cp.ID)
		if !ok {
			t.Fatalf("the clone vanished; daemon log:\n%s", d.Log())
		}
		if f.Status == "ready" {
			if f.Progress != nil {
				t.Errorf("a ready clone still shows progress %+v", f.Progress)
			}
			break
		}
		if f.Status != "cloning" || f.Progress == nil {
			t.Fatalf("clone in progress: %+v", f)
		}
		if f.Progress.FilesDone > 0 && f.Progress.FilesDone < f.Progress.FilesTotal {
			midway++
		}
		if time.Since(t1) > 5*time.Minute {
			t.Fatal("the clone did not finish in 5 minutes")
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("clone finished in %v; %d looks at it midway", time.Since(t1), midway)
	cp, _ = folderInfo(d, cp.ID)
	if cp.Owner.String() != "user:"+cloneUser || cp.Volume != "local" || cp.UsageMode != "model" {
		t.Errorf("the clone: %+v", cp)
	}

	// 3. The copy equals the source: contents, modes, owners, symlinks,
	// xattrs, file times, hard links.
	gotSnap, gotLinks := cloneSnapshot(t, cp.Path)
	compareSnaps(t, wantSnap, gotSnap)
	if fmt.Sprint(gotLinks) != fmt.Sprint(wantLinks) {
		t.Errorf("hard links: copy %v, source %v", gotLinks, wantLinks)
	}

	// 4. Charged exactly: the ledger's figure for the copy is what is on
	// the volume, and a check finds nothing to repair.
	cpBytes, cpInodes, _ := charge(t, cp.Path)
	var u api.FolderUsage
	d.JSON(&u, "usage", cp.ID)
	if u.UsedBytes != cpBytes || u.UsedInodes != cpInodes {
		t.Errorf("the ledger charges the copy %d bytes / %d inodes; on the volume: %d / %d", u.UsedBytes, u.UsedInodes, cpBytes, cpInodes)
	}
	afterCopy := dqScope(d, cloneUser)
	if afterCopy.UsedBytes != before.UsedBytes+cpBytes || afterCopy.UsedInodes != before.UsedInodes+cpInodes {
		t.Errorf("scope after the clone: %d / %d; want %d / %d", afterCopy.UsedBytes, afterCopy.UsedInodes, before.UsedBytes+cpBytes, before.UsedInodes+cpInodes)
	}
	rc := d.CLI("--json", "quota-scope", "check", "local", cloneUser, "-t", "user")
	var rep api.QuotaCheck
	if err := json.Unmarshal([]byte(rc.Stdout), &rep); err != nil || rc.Code != 0 || rep.Drift || rep.UsedBytes != afterCopy.UsedBytes {
		t.Errorf("check after the clone: exit %d, drift %v, used %d (ledger %d): %s", rc.Code, rep.Drift, rep.UsedBytes, afterCopy.UsedBytes, rc)
	}

	// 5. clone --wait shows progress (lines, no terminal here) and ends
	// with the ready folder; the copy is then purged with --wait.
	r = d.OK("clone", src.ID, "copy2", "--user", cloneUser, "--wait")
	if !strings.Contains(r.Stderr, "clone: ") || !strings.Contains(r.Stderr, fmt.Sprintf("of %d files", srcInodes)) || !strings.Contains(r.Stdout, "Cloned into folder \"copy2\"") {
		t.Errorf("clone --wait: %s", r)
	}
	d.OK("delete", "copy2", "--user", cloneUser)
	d.OK("purge", "copy2", "--user", cloneUser, "--confirm", "copy2", "--wait")
	if q := dqScope(d, cloneUser); q.UsedBytes != afterCopy.UsedBytes || q.UsedInodes != afterCopy.UsedInodes {
		t.Errorf("after purging copy2: %+v; want %d / %d", q, afterCopy.UsedBytes, afterCopy.UsedInodes)
	}

	// 6. SIGKILL mid-clone: after the restart the clone is finished or
	// gone without a trace.
	var k api.Folder
	d.JSON(&k, "clone", src.ID, "killed", "--user", cloneUser)
	for {
		f, ok := folderInfo(d, k.ID)
		if !ok || f.Status != "cloning" || (f.Progress != nil && f.Progress.FilesDone > 0) {
			if ok && f.Progress != nil {
				t.Logf("killing the daemon at %d of %d files, %d of %d bytes", f.Progress.FilesDone, f.Progress.FilesTotal, f.Progress.BytesDone, f.Progress.BytesTotal)
			}
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	d.Kill()
	d.Start()
	q := settled(t, d, cloneUser)
	f, ok := folderInfo(d, k.ID)
	switch {
	case ok && f.Status == "ready":
		t.Logf("the killed clone had finished")
		got, links := cloneSnapshot(t, f.Path)
		compareSnaps(t, wantSnap, got)
		if fmt.Sprint(links) != fmt.Sprint(wantLinks) {
			t.Errorf("hard links of the finished clone: %v", links)
		}
	case ok:
		t.Errorf("after the restart the killed clone is %+v; want ready or gone", f)
	default:
		if _, err := os.Lstat(k.Path); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("the rolled-back clone left its directory %s: %v", k.Path, err)
		}
		if dirs := folderDirs(t, vol, cloneUser); len(dirs) != 2 {
			t.Errorf("folder directories after the rollback: %v; want the source's and the copy's", dirs)
		}
		if q.UsedBytes != afterCopy.UsedBytes || q.UsedInodes != afterCopy.UsedInodes {
			t.Errorf("usage after the rolled-back clone: %d / %d; want %d / %d", q.UsedBytes, q.UsedInodes, afterCopy.UsedBytes, afterCopy.UsedInodes)
		}
	}
	if code, rep := cloneCheck(t, d); code != 0 || rep.Drift {
		t.Errorf("check after the killed clone: exit %d, %+v", code, rep.Counts)
	}
}

func cloneCheck(t *testing.T, d *Daemon) (int, api.QuotaCheck) {
	t.Helper()
	r := d.CLI("--json", "quota-scope", "check", "local", cloneUser, "-t", "user")
	var rep api.QuotaCheck
	if err := json.Unmarshal([]byte(r.Stdout), &rep); err != nil {
		t.Fatalf("check printed no report: %v\n%s", err, r)
	}
	return r.Code, rep
}

func compareSnaps(t *testing.T, want, got map[string]cloneEntry) {
	t.Helper()
	bad := 0
	for p, w := range want {
		g, ok := got[p]
		if !ok {
			t.Errorf("%s: missing in the copy", p)
		} else if w != g {
			t.Errorf("%s: source %+v, copy %+v", p, w, g)
		} else {
			continue
		}
		if bad++; bad > 10 {
			t.Fatal("too many differences")
		}
	}
	for p := range got {
		if _, ok := want[p]; !ok {
			t.Errorf("%s: in the copy only", p)
		}
	}
}

// TestPurgeBackground: the purge of a 100k-file folder answers at once
// (delete-ongoing, with progress), survives a SIGKILL midway, finishes
// after the restart and gives the usage back exactly.
func TestPurgeBackground(t *testing.T) {
	d := StartDaemon(t, DaemonOptions{})
	var f api.Folder
	d.JSON(&f, "create", "big", "local", "--user", purgeUser)
	empty := dqScope(d, purgeUser)
	t0 := time.Now()
	for i := 0; i < 100; i++ {
		dir := filepath.Join(f.Path, fmt.Sprintf("d%02d", i))
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for j := 0; j < 1000; j++ {
			if err := os.WriteFile(filepath.Join(dir, strconv.Itoa(j)), []byte("0123456789"), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	d.OK("quota-scope", "check", "local", purgeUser, "-t", "user", "--repair")
	full := dqScope(d, purgeUser)
	t.Logf("100k files written in %v; scope %d bytes / %d inodes (empty folder: %d / %d)", time.Since(t0), full.UsedBytes, full.UsedInodes, empty.UsedBytes, empty.UsedInodes)
	if full.UsedInodes != 100100 {
		t.Fatalf("the scope holds %d inodes; want 100100", full.UsedInodes)
	}
	d.OK("delete", f.ID)

	t1 := time.Now()
	var p api.Folder
	d.JSON(&p, "purge", f.ID, "--confirm", "big")
	answered := time.Since(t1)
	if p.Status != "delete-ongoing" || p.Progress == nil || p.Progress.Op != api.OpPurge || p.Progress.FilesTotal != 100101 {
		t.Fatalf("purge answered %+v (progress %+v); want delete-ongoing and 100101 entries to remove", p, p.Progress)
	}
	var seen *api.Progress
	for {
		cur, ok := folderInfo(d, f.ID)
		if !ok {
			break
		}
		if cur.Status != "delete-ongoing" {
			t.Fatalf("folder during the purge: %+v", cur)
		}
		if cur.Progress != nil && cur.Progress.FilesDone > 0 {
			seen = cur.Progress
			break
		}
		time.Sleep(2 * time.Millisecond)
	}
	t.Logf("purge answered in %v; progress seen: %+v", answered, seen)
	if seen == nil {
		t.Fatal("the purge ended before any progress could be seen")
	}
	d.Kill()
	if _, err := os.Lstat(f.Path); err != nil {
		t.Logf("the folder directory is gone at the kill: %v", err)
	}
	d.Start()
	deadline := time.Now().Add(3 * time.Minute)
	for {
		cur, ok := folderInfo(d, f.ID)
		if !ok {
			break
		}
		if cur.Status != "delete-ongoing" {
			t.Fatalf("after the restart the folder is %+v; want delete-ongoing until it is gone", cur)
		}
		if time.Now().After(deadline) {
			t.Fatal("the resumed purge did not finish in 3 minutes")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, err := os.Lstat(f.Path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the purged folder's directory: %v", err)
	}
	q := settled(t, d, purgeUser)
	if q.UsedBytes != 0 || q.UsedInodes != 0 {
		t.Errorf("usage after the purge: %d bytes / %d inodes; want 0 / 0", q.UsedBytes, q.UsedInodes)
	}
	for _, x := range listAll(d) {
		if x.ID == f.ID {
			t.Errorf("the purged folder's record is still there: %+v", x)
		}
	}
}

const (
	crProject  = "c10e0a0b0c0d4e0f8a9b0c1d2e3f4a5b"
	crMember   = "c20e0a0b0c0d4e0f8a9b0c1d2e3f4a5b" // member of crProject
	crOutsider = "c30e0a0b0c0d4e0f8a9b0c1d2e3f4a5b" // no membership, no invitation
	crOwner    = "c40e0a0b0c0d4e0f8a9b0c1d2e3f4a5b" // owns "amodel"
	crInvitee  = "c50e0a0b0c0d4e0f8a9b0c1d2e3f4a5b" // invited to "amodel", ro
)

// crScope is the ledger's figure of a scope ("user:<uuid>" or
// "project:<uuid>").
func crScope(d *Daemon, scope string) api.QuotaScope {
	d.t.Helper()
	var q api.QuotaScope
	d.JSON(&q, "quota-scope", "get", "local", scope)
	return q
}

// crFill writes a small tree into a folder's directory on the volume, as
// the storage owner, and records it in the ledger.
func crFill(t *testing.T, d *Daemon, dir, scope, kind string, seed int) {
	t.Helper()
	for i := 0; i < 5; i++ {
		sub := filepath.Join(dir, fmt.Sprintf("d%d", i%2))
		if err := os.MkdirAll(sub, 0o755); err != nil {
			t.Fatal(err)
		}
		b := make([]byte, 1000*(i+seed)+17)
		for j := range b {
			b[j] = byte(i + j + seed)
		}
		if err := os.WriteFile(filepath.Join(sub, fmt.Sprintf("f%d", i)), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := filepath.WalkDir(dir, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, StorageID, StorageID)
	}); err != nil {
		t.Fatal(err)
	}
	d.OK("quota-scope", "check", "local", scope, "-t", kind, "--repair")
}

// TestCloneFromReach: a project member clones the project's cloneable
// model folder into their own scope, an outsider is refused, an invitee
// clones the folder they were invited to; each copy is charged to the
// cloner's scope to the byte and the source's scope does not change.
func TestCloneFromReach(t *testing.T) {
	d := StartDaemon(t, DaemonOptions{})
	var pm, am api.Folder
	d.JSON(&pm, "create", "pmodel", "local", "--project", crProject, "--mode", "model", "--cloneable")
	crFill(t, d, pm.Path, crProject, "project", 1)
	d.JSON(&am, "create", "amodel", "local", "--user", crOwner, "--mode", "model", "--cloneable")
	crFill(t, d, am.Path, crOwner, "user", 3)
	d.OK("create", "plain", "local", "--project", crProject)
	d.OK("member", "add", "--project", crProject, "--user", crMember)
	var inv api.Invitation
	d.JSON(&inv, "invite", "amodel", "--user", crOwner, "--to", crInvitee, "--perm", "ro")
	d.OK("accept", inv.ID, "--user", crInvitee)
	// The cloners' scopes exist (each has a folder of their own).
	d.OK("create", "own", "local", "--user", crMember)
	d.OK("create", "own", "local", "--user", crInvitee)

	// Refusals: nothing reached, not cloneable, not accepted.
	shFail(t, d, "may not clone", "clone", pm.ID, "x", "--user", crOutsider)
	shFail(t, d, "reaches no folder named", "clone", "pmodel", "x", "--user", crOutsider)
	shFail(t, d, "not cloneable", "clone", "plain", "x", "--user", crMember)
	shFail(t, d, "may not clone", "clone", am.ID, "x", "--user", crMember)

	for _, c := range []struct {
		who, ref, name, srcScope string
		src                      api.Folder
	}{
		{crMember, "pmodel", "mymodel", "project:" + crProject, pm},
		{crInvitee, "amodel", "acopy", "user:" + crOwner, am},
	} {
		srcBefore := crScope(d, c.srcScope)
		before := crScope(d, "user:"+c.who)
		var cp api.Folder
		d.JSON(&cp, "clone", c.ref, c.name, "--user", c.who, "--wait")
		if cp.Status != "ready" || cp.Owner.String() != "user:"+c.who {
			t.Fatalf("clone of %s by %s: %+v", c.ref, c.who, cp)
		}
		want, _ := cloneSnapshot(t, c.src.Path)
		got, _ := cloneSnapshot(t, cp.Path)
		compareSnaps(t, want, got)
		cpBytes, cpInodes, _ := charge(t, cp.Path)
		if after := crScope(d, "user:"+c.who); after.UsedBytes != before.UsedBytes+cpBytes || after.UsedInodes != before.UsedInodes+cpInodes {
			t.Errorf("%s's scope after cloning %s: %d bytes / %d inodes; want %d / %d", c.who, c.ref,
				after.UsedBytes, after.UsedInodes, before.UsedBytes+cpBytes, before.UsedInodes+cpInodes)
		}
		if after := crScope(d, c.srcScope); after.UsedBytes != srcBefore.UsedBytes || after.UsedInodes != srcBefore.UsedInodes {
			t.Errorf("the source scope %s changed: %+v -> %+v", c.srcScope, srcBefore, after)
		}
	}
	// The clone is the cloner's own folder: it shows in their reach as owned.
	shWant(t, "the member reaches", shReach(t, d, crMember), map[string]string{"own": "owner rw", "mymodel": "owner rw", "pmodel": "project rw", "plain": "project rw"})
	// Revoked, the invitee clones no more.
	d.OK("leave", "amodel", "--user", crInvitee)
	shFail(t, d, "may not clone", "clone", am.ID, "again", "--user", crInvitee)
}
