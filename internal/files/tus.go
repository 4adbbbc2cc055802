package files

// The tus data store: uploads staged in the folder's .vfolder-uploads
// directory through its view, moved into place when complete (see the
// package comment).

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"

	"github.com/tus/tusd/v2/pkg/handler"
	"github.com/tus/tusd/v2/pkg/memorylocker"
	"golang.org/x/exp/slog"
	"golang.org/x/sys/unix"

	"github.com/vfolder/vfolder/api"
	"github.com/vfolder/vfolder/internal/service"
	"github.com/vfolder/vfolder/meta"
)

// MaxUploadSize bounds one upload (the quota bounds it further).
const MaxUploadSize = 1 << 50

func newTus(a *API) (*handler.UnroutedHandler, error) {
	composer := handler.NewStoreComposer()
	st := &tusStore{a: a}
	composer.UseCore(st)
	composer.UseTerminater(st)
	memorylocker.New().UseIn(composer)
	return handler.NewUnroutedHandler(handler.Config{
		StoreComposer:           composer,
		BasePath:                api.UploadsPath + "/",
		MaxSize:                 MaxUploadSize,
		DisableDownload:         true,
		DisableConcatenation:    true,
		Logger:                  slog.New(slog.NewTextHandler(io.Discard, nil)),
		PreUploadCreateCallback: nil,
	})
}

type callerKey struct{}

// tusRoute authenticates a tus request and hands it to h with the upload
// id alone as its path (what tusd's handler reads the id from).
func (a *API) tusRoute(h http.HandlerFunc) http.Handler {
	inner := a.tus.Middleware(h)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := params(r); err != nil {
			a.fail(w, r, err)
			return
		}
		c, err := a.callerOf(r)
		if err != nil {
			a.fail(w, r, err)
			return
		}
		r = r.WithContext(context.WithValue(r.Context(), callerKey{}, c))
		if id := r.PathValue("id"); id != "" {
			r2 := *r
			u := *r.URL
			u.Path, u.RawPath = id, ""
			r2.URL = &u
			r = &r2
		}
		inner.ServeHTTP(w, r)
	})
}

// tusError renders err as a tus response with an api.Error JSON body.
func tusError(err error) error {
	var te handler.Error
	if errors.As(err, &te) {
		return te
	}
	code := codeOf(err)
	b, _ := json.Marshal(api.Error{Code: code, Message: err.Error()})
	return handler.Error{
		ErrorCode: code,
		Message:   err.Error(),
		HTTPResponse: handler.HTTPResponse{
			StatusCode: api.StatusOf(code),
			Body:       string(b) + "\n",
			Header:     handler.HTTPHeader{"Content-Type": "application/json"},
		},
	}
}

type tusStore struct{ a *API }

// uploadRecord is <id>.json: the tus record plus where the upload goes.
type uploadRecord struct {
	Info      handler.FileInfo `json:"info"`
	Path      string           `json:"path"`
	Overwrite bool             `json:"overwrite"`
	Mode      uint32           `json:"mode"`
	User      string           `json:"user,omitempty"`
}

type tusUpload struct {
	a   *API
	ac  *access
	id  string
	rec uploadRecord
}

func callerFrom(ctx context.Context) (caller, error) {
	c, ok := ctx.Value(callerKey{}).(caller)
	if !ok {
		return caller{}, fmt.Errorf("%w: no caller", ErrUnauthorized)
	}
	return c, nil
}

// parseUploadID splits "<folder id>-<32 hex>".
func parseUploadID(id string) (folder string, err error) {
	f, rnd, ok := strings.Cut(id, "-")
	if !ok || len(f) != 32 || len(rnd) != 32 || !isHex(f) || !isHex(rnd) {
		return "", handler.ErrNotFound
	}
	return f, nil
}

func isHex(s string) bool {
	for _, c := range []byte(s) {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// openStaging opens (creating when create) the folder's staging
// directory; the root fd is closed before returning.
func (ac *access) openStaging(create bool) (int, error) {
	root, err := ac.openRoot()
	if err != nil {
		return -1, err
	}
	defer unix.Close(root)
	if create {
		if err := unix.Mkdirat(root, StagingDir, 0o700); err != nil && err != unix.EEXIST {
			return -1, fsErr("mkdir", "/"+StagingDir, err)
		}
	}
	fd, err := openAt(root, StagingDir, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		return -1, fsErr("open", "/"+StagingDir, err)
	}
	return fd, nil
}

func (s *tusStore) NewUpload(ctx context.Context, info handler.FileInfo) (handler.Upload, error) {
	u, err := s.newUpload(ctx, info)
	if err != nil {
		return nil, tusError(s.a.noRoomFor(ctx, u, err))
	}
	return u, nil
}

func (a *API) noRoomFor(ctx context.Context, u *tusUpload, err error) error {
	if u != nil && u.ac != nil {
		return a.noRoom(ctx, u.ac.folder, err)
	}
	return err
}

func (s *tusStore) newUpload(ctx context.Context, info handler.FileInfo) (*tusUpload, error) {
	c, err := callerFrom(ctx)
	if err != nil {
		return nil, err
	}
	md := info.MetaData
	for k := range md {
		switch k {
		case api.UploadMetaFolder, api.UploadMetaOwner, api.UploadMetaPath, api.UploadMetaOverwrite, api.UploadMetaMode, "filename", "filetype":
		default:
			return nil, fmt.Errorf("%w: unknown upload metadata %q (known: folder, owner, path, overwrite)", meta.ErrInvalid, k)
		}
	}
	p, err := CleanPath(md[api.UploadMetaPath])
	if err != nil {
		return nil, err
	}
	if p == "." {
		return nil, fmt.Errorf("%w: upload metadata \"path\" must name the file to create", meta.ErrInvalid)
	}
	overwrite := false
	switch md[api.UploadMetaOverwrite] {
	case "", "0", "false":
	case "1", "true":
		overwrite = true
	default:
		return nil, fmt.Errorf("%w: upload metadata \"overwrite\" is %q; use 1 or 0", meta.ErrInvalid, md[api.UploadMetaOverwrite])
	}
	mode, err := ParseMode(md[api.UploadMetaMode])
	if err != nil {
		return nil, err
	}
	owner, err := parseOwner(md[api.UploadMetaOwner])
	if err != nil {
		return nil, err
	}
	ac, err := s.a.resolve(ctx, c, md[api.UploadMetaFolder], owner)
	if err != nil {
		return nil, err
	}
	u := &tusUpload{a: s.a, ac: ac}
	if err := ac.canWrite(); err != nil {
		return u, err
	}
	if overwrite {
		if err := ac.canDelete(); err != nil {
			return u, err
		}
	}
	if err := s.a.checkVolume(ctx, ac, service.VolUpload); err != nil {
		return u, err
	}
	if !overwrite {
		if err := ac.refuseExisting(p); err != nil {
			return u, err
		}
	}
	if !info.SizeIsDeferred {
		if err := s.a.checkRoom(ctx, ac.folder, info.Size); err != nil {
			return u, err
		}
	}
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return u, err
	}
	u.id = ac.folder.ID + "-" + hex.EncodeToString(b)
	info.ID = u.id
	info.Offset = 0
	u.rec = uploadRecord{Info: info, Path: p, Overwrite: overwrite, Mode: mode, User: c.user()}
	var sfd int
	for try := 0; ; try++ {
		// The staging directory goes when its last upload does
		// (dropStaging): make it again if it went meanwhile.
		if sfd, err = ac.openStaging(true); err != nil {
			return u, err
		}
		fd, err := unix.Openat(sfd, u.id+".part", unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_CLOEXEC|unix.O_NOFOLLOW, mode)
		if err == nil {
			unix.Close(fd)
			break
		}
		unix.Close(sfd)
		if err != unix.ENOENT || try == 3 {
			return u, fsErr("create", "upload "+u.id, err)
		}
	}
	defer unix.Close(sfd)
	if err := u.writeRecord(); err != nil {
		u.removeStaged(sfd)
		return u, err
	}
	s.a.log.Info().Str("upload", u.id).Str("folder", ac.folder.ID).Str("path", "/"+p).Int64("size", info.Size).
		Str("user", c.user()).Msg("upload created")
	return u, nil
}

// ParseMode reads an upload's mode metadata: octal permission bits (no
// suid, sgid or sticky), default 0644.
func ParseMode(s string) (uint32, error) {
	if s == "" {
		return 0o644, nil
	}
	if len(s) > 4 {
		return 0, fmt.Errorf("%w: upload mode %q is not octal permission bits (e.g. 0644)", meta.ErrInvalid, s)
	}
	var m uint32
	for _, c := range []byte(s) {
		if c < '0' || c > '7' {
			return 0, fmt.Errorf("%w: upload mode %q is not octal permission bits (e.g. 0644)", meta.ErrInvalid, s)
		}
		m = m<<3 | uint32(c-'0')
	}
	if m > 0o777 {
		return 0, fmt.Errorf("%w: upload mode %q sets more than permission bits", meta.ErrInvalid, s)
	}
	return m, nil
}

// refuseExisting refuses an upload onto an existing entry.
func (ac *access) refuseExisting(p string) error {
	root, err := ac.openRoot()
	if err != nil {
		return err
	}
	defer unix.Close(root)
	_, err = stat(root, p)
	switch {
	case err == nil:
		return fmt.Errorf("%w: /%s exists already (upload with overwrite to replace it)", meta.ErrExists, p)
	case errors.Is(err, meta.ErrNotFound):
		return nil
	}
	return err
}

// recordPath is where an upload's record lives: the daemon's state
// directory (node-local metadata; the volume holds only the data).
func (a *API) recordPath(id string) string { return filepath.Join(a.recordDir, id+".json") }

func (u *tusUpload) writeRecord() error {
	b, err := json.Marshal(u.rec)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(u.a.recordDir, 0o700); err != nil {
		return fmt.Errorf("upload records: %w", err)
	}
	p := u.a.recordPath(u.id)
	if err := os.WriteFile(p+".tmp", b, 0o600); err != nil {
		return fmt.Errorf("upload record: %w", err)
	}
	if err := os.Rename(p+".tmp", p); err != nil {
		os.Remove(p + ".tmp")
		return fmt.Errorf("upload record: %w", err)
	}
	return nil
}

func (s *tusStore) GetUpload(ctx context.Context, id string) (handler.Upload, error) {
	u, err := s.getUpload(ctx, id)
	if err != nil {
		return nil, tusError(err)
	}
	return u, nil
}

func (s *tusStore) getUpload(ctx context.Context, id string) (*tusUpload, error) {
	folder, err := parseUploadID(id)
	if err != nil {
		return nil, err
	}
	c, err := callerFrom(ctx)
	if err != nil {
		return nil, err
	}
	ac, err := s.a.resolve(ctx, c, folder, meta.ScopeID{})
	if errors.Is(err, meta.ErrNotFound) {
		return nil, handler.ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	if err := ac.canWrite(); err != nil {
		return nil, err
	}
	sfd, err := ac.openStaging(false)
	if errors.Is(err, meta.ErrNotFound) {
		return nil, handler.ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	defer unix.Close(sfd)
	b, err := os.ReadFile(s.a.recordPath(id))
	if errors.Is(err, os.ErrNotExist) {
		return nil, handler.ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("upload record: %w", err)
	}
	u := &tusUpload{a: s.a, ac: ac, id: id}
	if err := json.Unmarshal(b, &u.rec); err != nil {
		return nil, fmt.Errorf("upload record %s: %w", id, err)
	}
	if !c.admin && u.rec.User != c.user() {
		return nil, handler.ErrNotFound
	}
	var st unix.Stat_t
	if err := unix.Fstatat(sfd, id+".part", &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		if err == unix.ENOENT {
			return nil, handler.ErrNotFound
		}
		return nil, fsErr("stat", "upload "+id, err)
	}
	u.rec.Info.Offset = st.Size
	return u, nil
}

func (u *tusUpload) GetInfo(context.Context) (handler.FileInfo, error) { return u.rec.Info, nil }

func (u *tusUpload) GetReader(context.Context) (io.ReadCloser, error) {
	return nil, handler.ErrNotImplemented
}

// writeErr marks an error of the write side (the view), as opposed to
// the request body's.
type writeErr struct{ err error }

func (e writeErr) Error() string { return e.err.Error() }

type offsetWriter struct {
	f   *os.File
	off int64
}

func (w *offsetWriter) Write(b []byte) (int, error) {
	n, err := w.f.WriteAt(b, w.off)
	w.off += int64(n)
	if err != nil {
		return n, writeErr{err}
	}
	return n, nil
}

func (u *tusUpload) WriteChunk(ctx context.Context, offset int64, src io.Reader) (int64, error) {
	// The volume permission is asked again for every chunk: a resume after
	// it was withdrawn is refused.
	if err := u.a.checkVolume(ctx, u.ac, service.VolUpload); err != nil {
		return 0, tusError(err)
	}
	sfd, err := u.ac.openStaging(false)
	if err != nil {
		return 0, tusError(err)
	}
	defer unix.Close(sfd)
	fd, err := openAt(sfd, u.id+".part", unix.O_WRONLY, 0)
	if err != nil {
		return 0, tusError(fsErr("open", "upload "+u.id, err))
	}
	f := os.NewFile(uintptr(fd), u.id)
	defer f.Close()
	defer u.a.touchRecord(u.id)
	n, err := io.CopyBuffer(&offsetWriter{f: f, off: offset}, src, make([]byte, 1<<20))
	var we writeErr
	if errors.As(err, &we) {
		werr := fsErr("write", "upload "+u.id, we.err)
		if errors.Is(werr, errNoRoom) {
			// Nothing partial stays behind.
			f.Close()
			u.removeStaged(sfd)
			u.a.log.Warn().Str("upload", u.id).Int64("written", offset+n).Msg("upload crossed the quota limit: removed")
			return n, tusError(u.a.quotaError(ctx, u.ac.folder, 0))
		}
		return n, tusError(werr)
	}
	// A read error (the client went away) keeps what was written: the
	// upload resumes from there.
	return n, err
}

// dropStaging removes the staging directory when it is empty, so that a
// folder without unfinished uploads holds (and is charged for) nothing
// of them. A refusal (not empty, rw without delete) leaves it.
func dropStaging(root int) { _ = unix.Unlinkat(root, StagingDir, unix.AT_REMOVEDIR) }

// removeStaged drops an unfinished upload: its record, and its data. Where
// the view refuses the unlink (rw on a volume that does not let rw
// delete) the data is truncated to nothing instead, so that no byte of it
// stays charged; the empty file stays in the staging directory.
func (u *tusUpload) removeStaged(sfd int) {
	_ = os.Remove(u.a.recordPath(u.id))
	err := unix.Unlinkat(sfd, u.id+".part", 0)
	if err == nil || err == unix.ENOENT {
		if root, rerr := u.ac.openRoot(); rerr == nil {
			dropStaging(root)
			unix.Close(root)
		}
		return
	}
	fd, oerr := openAt(sfd, u.id+".part", unix.O_WRONLY|unix.O_TRUNC, 0)
	if oerr == nil {
		unix.Close(fd)
	}
	u.a.log.Warn().Err(err).Str("upload", u.id).Msg("the view refuses to remove a dropped upload's data: truncated to 0 bytes instead")
}

// FinishUpload moves the complete file into place: missing parents are
// created, an existing target is refused unless the upload overwrites.
func (u *tusUpload) FinishUpload(ctx context.Context) error {
	root, err := u.ac.openRoot()
	if err != nil {
		return tusError(err)
	}
	defer unix.Close(root)
	sfd, err := openAt(root, StagingDir, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		return tusError(fsErr("open", "/"+StagingDir, err))
	}
	defer unix.Close(sfd)
	dir, base, err := splitPath(u.rec.Path)
	if err != nil {
		return tusError(err)
	}
	if err := mkdir(root, dir, true); err != nil {
		return tusError(u.a.noRoom(ctx, u.ac.folder, err))
	}
	pfd, err := openAt(root, dir, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		return tusError(fsErr("open", "/"+dir, err))
	}
	defer unix.Close(pfd)
	// The mode asked for, whatever the umask made of it at creation.
	if err := unix.Fchmodat(sfd, u.id+".part", u.rec.Mode, 0); err != nil {
		return tusError(fsErr("chmod", "/"+u.rec.Path, err))
	}
	if err := renameAt(sfd, u.id+".part", pfd, base, u.rec.Overwrite, "/"+u.rec.Path); err != nil {
		return tusError(err)
	}
	_ = os.Remove(u.a.recordPath(u.id))
	dropStaging(root)
	u.a.log.Info().Str("upload", u.id).Str("folder", u.ac.folder.ID).Str("path", "/"+u.rec.Path).
		Int64("size", u.rec.Info.Size).Msg("upload complete")
	return nil
}

func (s *tusStore) AsTerminatableUpload(up handler.Upload) handler.TerminatableUpload {
	return up.(*tusUpload)
}

// Terminate removes an unfinished upload's staged data.
func (u *tusUpload) Terminate(context.Context) error {
	sfd, err := u.ac.openStaging(false)
	if err != nil {
		return tusError(err)
	}
	defer unix.Close(sfd)
	u.removeStaged(sfd)
	return nil
}
