package fs

// Observing the FUSE requests (metrics).
//
// go-fuse's node API has no per-operation hook, so the observation sits
// one layer down: the fuse.RawFileSystem that gofs.NewNodeFS returns is
// wrapped (observedRaw) before fuse.NewServer gets it. Each wrapped method
// reads the monotonic clock before and after the call and hands the
// operation, the latency and the FUSE status to the Observer: two clock
// reads and one interface call per request, no allocation. The wrapper
// is installed only when an Observer is set (SetObserver) before the
// mount is made; without one the raw file system is served as it is and
// the requests cost nothing more.
//
// What is timed is the daemon's part of a request: for READ, producing
// the reply (a passthrough or splice reply moves the data after the
// method returns); FORGET, RELEASE and RELEASEDIR have no reply and are
// counted with their duration and status 0. WRITE is served through
// Writev (one call per request; a Writev that answers ENOSYS falls back
// to Write, which is then the one counted).
//
// The Observer is also told of every EDQUOT a view answers (QuotaRefused),
// with the scope that had no room: the refusals of the ledger
// (quotaHook.errno) and the writes cut to nothing by the grant.
//
// The observer is process-wide: one daemon, one set of metrics. Set it
// once, before mounting; FS instances made earlier keep what they had.

import (
	"sync/atomic"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/vfolder/vfolder/quota"
)

// Observer receives what the FUSE servers do. Implementations are called
// on the FUSE request goroutines, concurrently, and must be cheap and
// must not block: Request runs once per request.
type Observer interface {
	// Request is called after op was answered with status (0 or an
	// errno), d after it started.
	Request(op Op, d time.Duration, status int32)
	// QuotaRefused is called when a view answers EDQUOT because the
	// scope s has no room.
	QuotaRefused(s quota.ScopeKey)
}

// Op is a FUSE operation (see Op.String).
type Op uint8

const (
	OpLookup Op = iota
	OpGetAttr
	OpSetAttr
	OpMknod
	OpMkdir
	OpUnlink
	OpRmdir
	OpRename
	OpLink
	OpSymlink
	OpReadlink
	OpAccess
	OpGetXAttr
	OpListXAttr
	OpSetXAttr
	OpRemoveXAttr
	OpCreate
	OpTmpfile
	OpOpen
	OpRead
	OpLseek
	OpGetLk
	OpSetLk
	OpSetLkw
	OpWrite
	OpCopyFileRange
	OpIoctl
	OpFlush
	OpFsync
	OpFallocate
	OpOpenDir
	OpReadDir
	OpReadDirPlus
	OpFsyncDir
	OpStatFs
	OpStatx
	OpForget
	OpRelease
	OpReleaseDir
	// NumOps is the number of Op values.
	NumOps
)

var opNames = [NumOps]string{
	OpLookup:        "lookup",
	OpGetAttr:       "getattr",
	OpSetAttr:       "setattr",
	OpMknod:         "mknod",
	OpMkdir:         "mkdir",
	OpUnlink:        "unlink",
	OpRmdir:         "rmdir",
	OpRename:        "rename",
	OpLink:          "link",
	OpSymlink:       "symlink",
	OpReadlink:      "readlink",
	OpAccess:        "access",
	OpGetXAttr:      "getxattr",
	OpListXAttr:     "listxattr",
	OpSetXAttr:      "setxattr",
	OpRemoveXAttr:   "removexattr",
	OpCreate:        "create",
	OpTmpfile:       "tmpfile",
	OpOpen:          "open",
	OpRead:          "read",
	OpLseek:         "lseek",
	OpGetLk:         "getlk",
	OpSetLk:         "setlk",
	OpSetLkw:        "setlkw",
	OpWrite:         "write",
	OpCopyFileRange: "copy_file_range",
	OpIoctl:         "ioctl",
	OpFlush:         "flush",
	OpFsync:         "fsync",
	OpFallocate:     "fallocate",
	OpOpenDir:       "opendir",
	OpReadDir:       "readdir",
	OpReadDirPlus:   "readdirplus",
	OpFsyncDir:      "fsyncdir",
	OpStatFs:        "statfs",
	OpStatx:         "statx",
	OpForget:        "forget",
	OpRelease:       "release",
	OpReleaseDir:    "releasedir",
}

// String is the operation's lowercase FUSE name ("lookup", "write"...).
func (o Op) String() string {
	if o < NumOps {
		return opNames[o]
	}
	return "unknown"
}

var observer atomic.Pointer[Observer]

// SetObserver makes o observe the FUSE requests of every FS mounted from
// now on, and the EDQUOT answers of every view; nil stops new mounts from
// being observed.
func SetObserver(o Observer) {
	if o == nil {
		observer.Store(nil)
		return
	}
	observer.Store(&o)
}

func loadObserver() Observer {
	if p := observer.Load(); p != nil {
		return *p
	}
	return nil
}

// observeRaw wraps raw when an observer is set.
func observeRaw(raw fuse.RawFileSystem) fuse.RawFileSystem {
	if o := loadObserver(); o != nil {
		return &observedRaw{RawFileSystem: raw, o: o}
	}
	return raw
}

// quotaRefused tells the observer that scope s had no room.
func quotaRefused(s quota.ScopeKey) {
	if o := loadObserver(); o != nil {
		o.QuotaRefused(s)
	}
}

// observedRaw times every request of the raw file system it wraps.
type observedRaw struct {
	fuse.RawFileSystem
	o Observer
}

func (r *observedRaw) Forget(nodeid, nlookup uint64) {
	t := time.Now()
	r.RawFileSystem.Forget(nodeid, nlookup)
	r.o.Request(OpForget, time.Since(t), 0)
}

func (r *observedRaw) Release(cancel <-chan struct{}, input *fuse.ReleaseIn) {
	t := time.Now()
	r.RawFileSystem.Release(cancel, input)
	r.o.Request(OpRelease, time.Since(t), 0)
}

func (r *observedRaw) ReleaseDir(input *fuse.ReleaseIn) {
	t := time.Now()
	r.RawFileSystem.ReleaseDir(input)
	r.o.Request(OpReleaseDir, time.Since(t), 0)
}

func (r *observedRaw) Writev(cancel <-chan struct{}, input *fuse.WriteIn, data [][]byte) (uint32, fuse.Status) {
	t := time.Now()
	v, st := r.RawFileSystem.Writev(cancel, input, data)
	if st != fuse.ENOSYS {
		r.o.Request(OpWrite, time.Since(t), int32(st))
	}
	return v, st
}

func (r *observedRaw) Lookup(cancel <-chan struct{}, header *fuse.InHeader, name string, out *fuse.EntryOut) fuse.Status {
	t := time.Now()
	st := r.RawFileSystem.Lookup(cancel, header, name, out)
	r.o.Request(OpLookup, time.Since(t), int32(st))
	return st
}

func (r *observedRaw) GetAttr(cancel <-chan struct{}, input *fuse.GetAttrIn, out *fuse.AttrOut) fuse.Status {
	t := time.Now()
	st := r.RawFileSystem.GetAttr(cancel, input, out)
	r.o.Request(OpGetAttr, time.Since(t), int32(st))
	return st
}

func (r *observedRaw) SetAttr(cancel <-chan struct{}, input *fuse.SetAttrIn, out *fuse.AttrOut) fuse.Status {
	t := time.Now()
	st := r.RawFileSystem.SetAttr(cancel, input, out)
	r.o.Request(OpSetAttr, time.Since(t), int32(st))
	return st
}

func (r *observedRaw) Mknod(cancel <-chan struct{}, input *fuse.MknodIn, name string, out *fuse.EntryOut) fuse.Status {
	t := time.Now()
	st := r.RawFileSystem.Mknod(cancel, input, name, out)
	r.o.Request(OpMknod, time.Since(t), int32(st))
	return st
}

func (r *observedRaw) Mkdir(cancel <-chan struct{}, input *fuse.MkdirIn, name string, out *fuse.EntryOut) fuse.Status {
	t := time.Now()
	st := r.RawFileSystem.Mkdir(cancel, input, name, out)
	r.o.Request(OpMkdir, time.Since(t), int32(st))
	return st
}

func (r *observedRaw) Unlink(cancel <-chan struct{}, header *fuse.InHeader, name string) fuse.Status {
	t := time.Now()
	st := r.RawFileSystem.Unlink(cancel, header, name)
	r.o.Request(OpUnlink, time.Since(t), int32(st))
	return st
}

func (r *observedRaw) Rmdir(cancel <-chan struct{}, header *fuse.InHeader, name string) fuse.Status {
	t := time.Now()
	st := r.RawFileSystem.Rmdir(cancel, header, name)
	r.o.Request(OpRmdir, time.Since(t), int32(st))
	return st
}

func (r *observedRaw) Rename(cancel <-chan struct{}, input *fuse.RenameIn, oldName string, newName string) fuse.Status {
	t := time.Now()
	st := r.RawFileSystem.Rename(cancel, input, oldName, newName)
	r.o.Request(OpRename, time.Since(t), int32(st))
	return st
}

func (r *observedRaw) Link(cancel <-chan struct{}, input *fuse.LinkIn, filename string, out *fuse.EntryOut) fuse.Status {
	t := time.Now()
	st := r.RawFileSystem.Link(cancel, input, filename, out)
	r.o.Request(OpLink, time.Since(t), int32(st))
	return st
}

func (r *observedRaw) Symlink(cancel <-chan struct{}, header *fuse.InHeader, pointedTo string, linkName string, out *fuse.EntryOut) fuse.Status {
	t := time.Now()
	st := r.RawFileSystem.Symlink(cancel, header, pointedTo, linkName, out)
	r.o.Request(OpSymlink, time.Since(t), int32(st))
	return st
}

func (r *observedRaw) Readlink(cancel <-chan struct{}, header *fuse.InHeader) ([]byte, fuse.Status) {
	t := time.Now()
	v, st := r.RawFileSystem.Readlink(cancel, header)
	r.o.Request(OpReadlink, time.Since(t), int32(st))
	return v, st
}

func (r *observedRaw) Access(cancel <-chan struct{}, input *fuse.AccessIn) fuse.Status {
	t := time.Now()
	st := r.RawFileSystem.Access(cancel, input)
	r.o.Request(OpAccess, time.Since(t), int32(st))
	return st
}

func (r *observedRaw) GetXAttr(cancel <-chan struct{}, header *fuse.InHeader, attr string, dest []byte) (uint32, fuse.Status) {
	t := time.Now()
	v, st := r.RawFileSystem.GetXAttr(cancel, header, attr, dest)
	r.o.Request(OpGetXAttr, time.Since(t), int32(st))
	return v, st
}

func (r *observedRaw) ListXAttr(cancel <-chan struct{}, header *fuse.InHeader, dest []byte) (uint32, fuse.Status) {
	t := time.Now()
	v, st := r.RawFileSystem.ListXAttr(cancel, header, dest)
	r.o.Request(OpListXAttr, time.Since(t), int32(st))
	return v, st
}

func (r *observedRaw) SetXAttr(cancel <-chan struct{}, input *fuse.SetXAttrIn, attr string, data []byte) fuse.Status {
	t := time.Now()
	st := r.RawFileSystem.SetXAttr(cancel, input, attr, data)
	r.o.Request(OpSetXAttr, time.Since(t), int32(st))
	return st
}

func (r *observedRaw) RemoveXAttr(cancel <-chan struct{}, header *fuse.InHeader, attr string) fuse.Status {
	t := time.Now()
	st := r.RawFileSystem.RemoveXAttr(cancel, header, attr)
	r.o.Request(OpRemoveXAttr, time.Since(t), int32(st))
	return st
}

func (r *observedRaw) Create(cancel <-chan struct{}, input *fuse.CreateIn, name string, out *fuse.CreateOut) fuse.Status {
	t := time.Now()
	st := r.RawFileSystem.Create(cancel, input, name, out)
	r.o.Request(OpCreate, time.Since(t), int32(st))
	return st
}

func (r *observedRaw) Tmpfile(cancel <-chan struct{}, input *fuse.CreateIn, out *fuse.CreateOut) fuse.Status {
	t := time.Now()
	st := r.RawFileSystem.Tmpfile(cancel, input, out)
	r.o.Request(OpTmpfile, time.Since(t), int32(st))
	return st
}

func (r *observedRaw) Open(cancel <-chan struct{}, input *fuse.OpenIn, out *fuse.OpenOut) fuse.Status {
	t := time.Now()
	st := r.RawFileSystem.Open(cancel, input, out)
	r.o.Request(OpOpen, time.Since(t), int32(st))
	return st
}

func (r *observedRaw) Read(cancel <-chan struct{}, input *fuse.ReadIn, buf []byte) (fuse.ReadResult, fuse.Status) {
	t := time.Now()
	v, st := r.RawFileSystem.Read(cancel, input, buf)
	r.o.Request(OpRead, time.Since(t), int32(st))
	return v, st
}

func (r *observedRaw) Lseek(cancel <-chan struct{}, in *fuse.LseekIn, out *fuse.LseekOut) fuse.Status {
	t := time.Now()
	st := r.RawFileSystem.Lseek(cancel, in, out)
	r.o.Request(OpLseek, time.Since(t), int32(st))
	return st
}

func (r *observedRaw) GetLk(cancel <-chan struct{}, input *fuse.LkIn, out *fuse.LkOut) fuse.Status {
	t := time.Now()
	st := r.RawFileSystem.GetLk(cancel, input, out)
	r.o.Request(OpGetLk, time.Since(t), int32(st))
	return st
}

func (r *observedRaw) SetLk(cancel <-chan struct{}, input *fuse.LkIn) fuse.Status {
	t := time.Now()
	st := r.RawFileSystem.SetLk(cancel, input)
	r.o.Request(OpSetLk, time.Since(t), int32(st))
	return st
}

func (r *observedRaw) SetLkw(cancel <-chan struct{}, input *fuse.LkIn) fuse.Status {
	t := time.Now()
	st := r.RawFileSystem.SetLkw(cancel, input)
	r.o.Request(OpSetLkw, time.Since(t), int32(st))
	return st
}

func (r *observedRaw) Write(cancel <-chan struct{}, input *fuse.WriteIn, data []byte) (uint32, fuse.Status) {
	t := time.Now()
	v, st := r.RawFileSystem.Write(cancel, input, data)
	r.o.Request(OpWrite, time.Since(t), int32(st))
	return v, st
}

func (r *observedRaw) CopyFileRange(cancel <-chan struct{}, input *fuse.CopyFileRangeIn) (uint32, fuse.Status) {
	t := time.Now()
	v, st := r.RawFileSystem.CopyFileRange(cancel, input)
	r.o.Request(OpCopyFileRange, time.Since(t), int32(st))
	return v, st
}

func (r *observedRaw) Ioctl(cancel <-chan struct{}, input *fuse.IoctlIn, inbuf []byte, output *fuse.IoctlOut, outbuf []byte) fuse.Status {
	t := time.Now()
	st := r.RawFileSystem.Ioctl(cancel, input, inbuf, output, outbuf)
	r.o.Request(OpIoctl, time.Since(t), int32(st))
	return st
}

func (r *observedRaw) Flush(cancel <-chan struct{}, input *fuse.FlushIn) fuse.Status {
	t := time.Now()
	st := r.RawFileSystem.Flush(cancel, input)
	r.o.Request(OpFlush, time.Since(t), int32(st))
	return st
}

func (r *observedRaw) Fsync(cancel <-chan struct{}, input *fuse.FsyncIn) fuse.Status {
	t := time.Now()
	st := r.RawFileSystem.Fsync(cancel, input)
	r.o.Request(OpFsync, time.Since(t), int32(st))
	return st
}

func (r *observedRaw) Fallocate(cancel <-chan struct{}, input *fuse.FallocateIn) fuse.Status {
	t := time.Now()
	st := r.RawFileSystem.Fallocate(cancel, input)
	r.o.Request(OpFallocate, time.Since(t), int32(st))
	return st
}

func (r *observedRaw) OpenDir(cancel <-chan struct{}, input *fuse.OpenIn, out *fuse.OpenOut) fuse.Status {
	t := time.Now()
	st := r.RawFileSystem.OpenDir(cancel, input, out)
	r.o.Request(OpOpenDir, time.Since(t), int32(st))
	return st
}

func (r *observedRaw) ReadDir(cancel <-chan struct{}, input *fuse.ReadIn, out *fuse.DirEntryList) fuse.Status {
	t := time.Now()
	st := r.RawFileSystem.ReadDir(cancel, input, out)
	r.o.Request(OpReadDir, time.Since(t), int32(st))
	return st
}

func (r *observedRaw) ReadDirPlus(cancel <-chan struct{}, input *fuse.ReadIn, out *fuse.DirEntryList) fuse.Status {
	t := time.Now()
	st := r.RawFileSystem.ReadDirPlus(cancel, input, out)
	r.o.Request(OpReadDirPlus, time.Since(t), int32(st))
	return st
}

func (r *observedRaw) FsyncDir(cancel <-chan struct{}, input *fuse.FsyncIn) fuse.Status {
	t := time.Now()
	st := r.RawFileSystem.FsyncDir(cancel, input)
	r.o.Request(OpFsyncDir, time.Since(t), int32(st))
	return st
}

func (r *observedRaw) StatFs(cancel <-chan struct{}, input *fuse.InHeader, out *fuse.StatfsOut) fuse.Status {
	t := time.Now()
	st := r.RawFileSystem.StatFs(cancel, input, out)
	r.o.Request(OpStatFs, time.Since(t), int32(st))
	return st
}

func (r *observedRaw) Statx(cancel <-chan struct{}, input *fuse.StatxIn, out *fuse.StatxOut) fuse.Status {
	t := time.Now()
	st := r.RawFileSystem.Statx(cancel, input, out)
	r.o.Request(OpStatx, time.Since(t), int32(st))
	return st
}
