// Package files is vfolderd's file API: files inside folders over HTTP,
// for people without a session. It lists, stats, creates directories,
// moves, deletes, downloads (ranges, directories as tar or zip) and
// uploads (the tus resumable-upload protocol, github.com/tus/tusd/v2).
//
// # The same rules as the views, from the same code
//
// Every byte goes through the daemon's own FUSE namespace: a request on a
// folder opens the folder's view (users/<uuid>/<name> of the token's user,
// or the owner's users/ or projects/ view for an admin) under the mount
// point, checks that it is the daemon's FUSE mount, and does all file I/O
// with *at calls below that directory fd, each path resolved with openat2
// RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS|RESOLVE_NO_XDEV. So the view's mode
// (ro refuses every change, rw deletes only where the volume allows it),
// unified ownership on storage and the byte-exact quota (package quota,
// charged by package fs) are the FUSE path's own. On top of that the
// caller's permission (a token may lend less than the view holds) is
// checked here before anything changes.
//
// The I/O runs on net/http's goroutines, never inside a FUSE request
// handler: the FUSE server answers it on its own goroutines.
//
// # Authentication
//
// Root and the admin group (identified by the server through SO_PEERCRED,
// passed in with WithAdmin) may call everything, naming a folder by id or
// by name with its owner. Everyone else presents "Authorization: Bearer
// <token>", a JWT (HS256, github.com/golang-jwt/jwt/v5) an admin issued
// with POST /v1/tokens (vfolder token issue): user, optional folder,
// permission, expiry. The key is a file (token_key_file, default
// <state_dir>/token.key, created 0600 when absent); replacing it and
// restarting the daemon invalidates every token issued before. On every
// request the token's user must reach the folder at that moment
// (service.Reach: owned and project folders and whatever Reach grows to),
// and the effective permission is the lower of the token's and the
// reach's. A missing, malformed, expired or tampered token gets 401
// (code unauthorized); a folder the token does not open, 403 or 404.
//
// # Uploads and the quota
//
// POST /v1/uploads creates a tus upload whose Upload-Metadata names the
// folder, the target path and whether to overwrite. The partial data
// lives in <folder>/.vfolder-uploads/<id>.part, written through the view:
// it counts against the folder's quota while it exists. The upload's
// record (target, size, metadata, user) is node-local, in RecordDir
// (<state_dir>/uploads): an upload resumes on the node that started it. An upload of known length that does not
// fit in the scope's free bytes (the ledger's figures) is refused before
// a byte is written; one that crosses the limit while it streams
// (another writer filled the scope) stops with 507 (code quota-exceeded,
// with the limit, usage and free bytes), and its partial data is removed.
// The last byte moves the file into place with one rename (refusing an
// existing target unless overwrite), creating missing parent
// directories: nothing partial ever shows at the target. An interrupted
// upload continues from the size of its .part (HEAD gives the offset).
// An upload nobody wrote to for UploadExpiry (7 days) is dropped, its
// bytes given back (expire.go).
// Upload ids are "<folder id>-<random>", so every request on an upload
// is authorised against its folder; a token user resumes only uploads
// the same user started.
//
// # Listing, downloads and deletes
//
// A listing is NDJSON streamed batch by batch (1024 names per getdents
// round, flushed after each), so a directory of any size streams in
// bounded memory; its last line is an api.FileListEnd. A file downloads
// with http.ServeContent (Range, If-Modified-Since); a directory as a tar
// (default) or a zip (no compression), streamed. A recursive delete runs
// in the background (memory-only job, 202 with the job) and is polled at
// /v1/file-jobs/{id}.
//
// # Errors
//
// Errors are api.Error JSON bodies; status by code as in package server,
// plus 401 unauthorized and 507 quota-exceeded. Errnos from the view map
// to the meta sentinels (fsErr).
package files

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path"
	"slices"
	"strings"
	"time"

	"archive/tar"
	"archive/zip"

	"github.com/rs/zerolog"
	"github.com/tus/tusd/v2/pkg/handler"
	"golang.org/x/sys/unix"

	"github.com/vfolder/vfolder/api"
	"github.com/vfolder/vfolder/internal/service"
	"github.com/vfolder/vfolder/meta"
)

// Options configure the file API.
type Options struct {
	// KeyFile is the token signing key (LoadKey creates it when absent).
	KeyFile string
	// RecordDir holds the records of unfinished uploads (node-local,
	// e.g. <state_dir>/uploads).
	RecordDir string
	Log       zerolog.Logger
}

// API serves the file routes over a service.
type API struct {
	svc       *service.Service
	key       []byte
	recordDir string
	log       zerolog.Logger
	tus       *handler.UnroutedHandler
	jobs      jobs
	ctx       context.Context
	stop      context.CancelFunc
}

// New loads the token key and sets up the tus handler.
func New(svc *service.Service, opts Options) (*API, error) {
	key, err := LoadKey(opts.KeyFile)
	if err != nil {
		return nil, err
	}
	if opts.RecordDir == "" {
		return nil, errors.New("files: no directory for upload records")
	}
	a := &API{svc: svc, key: key, recordDir: opts.RecordDir, log: opts.Log}
	a.ctx, a.stop = context.WithCancel(context.Background())
	if a.tus, err = newTus(a); err != nil {
		return nil, err
	}
	go a.sweepLoop()
	return a, nil
}

// Close stops the background jobs.
func (a *API) Close() { a.stop() }

// Route prefixes of the file API: the server lets a request that carries
// a bearer token through to these only.
var routePrefixes = []string{"/" + api.Version + "/files/", "/" + api.Version + "/file-jobs/", api.UploadsPath}

// IsFileRoute tells whether p is a path of the file API (where a bearer
// token is accepted).
func IsFileRoute(p string) bool {
	for _, pre := range routePrefixes {
		if p == pre || strings.HasPrefix(p, strings.TrimSuffix(pre, "/")+"/") {
			return true
		}
	}
	return false
}

// codeOf is the API code of an error.
func codeOf(err error) string {
	var qe *QuotaError
	switch {
	case errors.As(err, &qe), errors.Is(err, errNoRoom):
		return api.CodeQuotaExceeded
	case errors.Is(err, ErrUnauthorized):
		return api.CodeUnauthorized
	}
	return service.Code(err)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func (a *API) fail(w http.ResponseWriter, r *http.Request, err error) {
	code := codeOf(err)
	status := api.StatusOf(code)
	if status >= 500 && code != api.CodeUnavailable && code != api.CodeQuotaExceeded {
		a.log.Error().Err(err).Str("method", r.Method).Str("path", r.URL.Path).Msg("file request failed")
	}
	if code == api.CodeUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="vfolderd"`)
	}
	writeJSON(w, status, &api.Error{Code: code, Message: err.Error()})
}

// noRoom turns errNoRoom into a QuotaError with the ledger's figures.
func (a *API) noRoom(ctx context.Context, f meta.Folder, err error) error {
	if errors.Is(err, errNoRoom) {
		return a.quotaError(ctx, f, 0)
	}
	return err
}

// params checks the query: only allowed parameters, each at most once.
func params(r *http.Request, allowed ...string) (url.Values, error) {
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return nil, fmt.Errorf("%w: query string: %v", meta.ErrInvalid, err)
	}
	for k, v := range q {
		if !slices.Contains(allowed, k) {
			return nil, fmt.Errorf("%w: unknown query parameter %q (allowed: %s)", meta.ErrInvalid, k, strings.Join(allowed, ", "))
		}
		if len(v) > 1 {
			return nil, fmt.Errorf("%w: query parameter %q is given %d times", meta.ErrInvalid, k, len(v))
		}
	}
	return q, nil
}

// parseOwner reads an optional owner (user:<uuid> or project:<uuid>).
func parseOwner(s string) (meta.ScopeID, error) {
	if s == "" {
		return meta.ScopeID{}, nil
	}
	id, err := meta.ParseScopeID(s)
	if err != nil {
		return meta.ScopeID{}, fmt.Errorf("owner: %w", err)
	}
	return id, nil
}

// folderHandler handles a request on one folder: ac is the caller's
// access, root the view's root directory fd (closed afterwards).
type folderHandler func(w http.ResponseWriter, r *http.Request, q url.Values, c caller, ac *access, root int) error

func (a *API) folderRoute(h folderHandler, allowed ...string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q, err := params(r, allowed...)
		if err != nil {
			a.fail(w, r, err)
			return
		}
		c, err := a.callerOf(r)
		if err != nil {
			a.fail(w, r, err)
			return
		}
		owner, err := parseOwner(q.Get("owner"))
		if err != nil {
			a.fail(w, r, err)
			return
		}
		ac, err := a.resolve(r.Context(), c, r.PathValue("ref"), owner)
		if err != nil {
			a.fail(w, r, err)
			return
		}
		root, err := ac.openRoot()
		if err != nil {
			a.fail(w, r, err)
			return
		}
		defer unix.Close(root)
		if err := h(w, r, q, c, ac, root); err != nil {
			a.fail(w, r, a.noRoom(r.Context(), ac.folder, err))
		}
	})
}

// decode reads a small JSON body strictly.
func decode(r *http.Request, v any) error {
	dec := json.NewDecoder(io.LimitReader(r.Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%w: request body: %v", meta.ErrInvalid, strings.TrimPrefix(err.Error(), "json: "))
	}
	return nil
}

func (a *API) list(w http.ResponseWriter, r *http.Request, q url.Values, _ caller, ac *access, root int) error {
	p, err := CleanPath(q.Get("path"))
	if err != nil {
		return err
	}
	// Errors before the first line are plain API errors: check that
	// the path is a directory first.
	if e, err := stat(root, p); err != nil {
		return err
	} else if e.Type != api.FileDir {
		return fmt.Errorf("%w: /%s is not a directory", meta.ErrInvalid, strings.TrimPrefix(p, "."))
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	bw := bufio.NewWriterSize(w, 64<<10)
	enc := json.NewEncoder(bw)
	rc := http.NewResponseController(w)
	var n int64
	err = list(r.Context(), root, p, func(e api.FileEntry) error {
		n++
		return enc.Encode(e)
	}, func() {
		_ = bw.Flush()
		_ = rc.Flush()
	})
	end := api.FileListEnd{End: true, Count: n}
	if err != nil {
		end.Error = &api.Error{Code: codeOf(err), Message: err.Error()}
	}
	_ = enc.Encode(end)
	_ = bw.Flush()
	return nil
}

func (a *API) stat(w http.ResponseWriter, r *http.Request, q url.Values, _ caller, ac *access, root int) error {
	p, err := CleanPath(q.Get("path"))
	if err != nil {
		return err
	}
	e, err := stat(root, p)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, e)
	return nil
}

func (a *API) mkdir(w http.ResponseWriter, r *http.Request, _ url.Values, _ caller, ac *access, root int) error {
	var req api.MkdirRequest
	if err := decode(r, &req); err != nil {
		return err
	}
	p, err := CleanPath(req.Path)
	if err != nil {
		return err
	}
	if err := ac.canWrite(); err != nil {
		return err
	}
	if err := mkdir(root, p, req.Parents); err != nil {
		return err
	}
	e, err := stat(root, p)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, e)
	return nil
}

func (a *API) move(w http.ResponseWriter, r *http.Request, _ url.Values, _ caller, ac *access, root int) error {
	var req api.MoveRequest
	if err := decode(r, &req); err != nil {
		return err
	}
	from, err := CleanPath(req.From)
	if err != nil {
		return err
	}
	to, err := CleanPath(req.To)
	if err != nil {
		return err
	}
	if err := ac.canWrite(); err != nil {
		return err
	}
	if req.Overwrite {
		// Replacing an entry deletes it.
		if err := ac.canDelete(); err != nil {
			return err
		}
	}
	if err := move(root, from, to, req.Overwrite); err != nil {
		return err
	}
	e, err := stat(root, to)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, e)
	return nil
}

func (a *API) delete(w http.ResponseWriter, r *http.Request, _ url.Values, c caller, ac *access, root int) error {
	var req api.DeleteRequest
	if err := decode(r, &req); err != nil {
		return err
	}
	p, err := CleanPath(req.Path)
	if err != nil {
		return err
	}
	if p == "." {
		return fmt.Errorf("%w: the folder's root cannot be deleted here (delete the folder itself)", meta.ErrInvalid)
	}
	if err := ac.canDelete(); err != nil {
		return err
	}
	if !req.Recursive {
		if err := remove(root, p); err != nil {
			return err
		}
		w.WriteHeader(http.StatusNoContent)
		return nil
	}
	pfd, base, err := openParent(root, p)
	if err != nil {
		return err
	}
	var st unix.Stat_t
	if err := unix.Fstatat(pfd, base, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		unix.Close(pfd)
		return fsErr("remove", "/"+p, err)
	}
	j := a.jobs.start(api.FileJob{Op: "delete", FolderID: ac.folder.ID, Path: "/" + p}, c.user())
	go func() {
		defer unix.Close(pfd)
		err := removeAll(a.ctx, pfd, base, "/"+p, j)
		j.finish(err)
		ev := a.log.Info()
		if err != nil {
			ev = a.log.Warn().Err(err)
		}
		s := j.snapshot()
		ev.Str("folder", ac.folder.ID).Str("path", "/"+p).Int64("removed", s.Removed).Msg("recursive delete finished")
	}()
	writeJSON(w, http.StatusAccepted, j.snapshot())
	return nil
}

func (a *API) getJob(w http.ResponseWriter, r *http.Request) {
	if _, err := params(r); err != nil {
		a.fail(w, r, err)
		return
	}
	c, err := a.callerOf(r)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	j := a.jobs.get(r.PathValue("id"))
	if j == nil || (!c.admin && j.user != c.user()) {
		a.fail(w, r, fmt.Errorf("%w: no job %q", meta.ErrNotFound, r.PathValue("id")))
		return
	}
	writeJSON(w, http.StatusOK, j.snapshot())
}

func (a *API) download(w http.ResponseWriter, r *http.Request, q url.Values, _ caller, ac *access, root int) error {
	p, err := CleanPath(q.Get("path"))
	if err != nil {
		return err
	}
	format := q.Get("format")
	switch format {
	case "", "tar", "zip":
	default:
		return fmt.Errorf("%w: format %q is neither tar nor zip", meta.ErrInvalid, format)
	}
	if err := a.checkVolume(r.Context(), ac, service.VolDownload); err != nil {
		return err
	}
	fd, err := openAt(root, p, unix.O_RDONLY, 0)
	if err != nil {
		return fsErr("download", "/"+strings.TrimPrefix(p, "."), err)
	}
	f := os.NewFile(uintptr(fd), p)
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fsErr("stat", "/"+p, err)
	}
	name := path.Base(p)
	if p == "." {
		name = ac.folder.Name
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Disposition", fmt.Sprintf("attachment; filename=%q", name))
		http.ServeContent(w, r, name, mtimeOf(&st), f)
		return nil
	case unix.S_IFDIR:
	default:
		return fmt.Errorf("%w: /%s is neither a file nor a directory", meta.ErrInvalid, p)
	}
	var ar archiver
	bw := bufio.NewWriterSize(w, 256<<10)
	if format == "zip" {
		w.Header().Set("Content-Type", "application/zip")
		w.Header().Set("Content-Disposition", fmt.Sprintf("attachment; filename=%q", name+".zip"))
		ar = zipArchiver{zip.NewWriter(bw)}
	} else {
		w.Header().Set("Content-Type", "application/x-tar")
		w.Header().Set("Content-Disposition", fmt.Sprintf("attachment; filename=%q", name+".tar"))
		ar = tarArchiver{tar.NewWriter(bw)}
	}
	if r.Method == http.MethodHead {
		w.WriteHeader(http.StatusOK)
		return nil
	}
	w.WriteHeader(http.StatusOK)
	err = walkArchive(r.Context(), f, fd, "", ar, p == ".")
	if err == nil {
		err = ar.Close()
	}
	if err == nil {
		err = bw.Flush()
	}
	if err != nil {
		// The status is sent: cut the stream so the client sees an
		// incomplete archive, never a well-formed short one.
		a.log.Warn().Err(err).Str("folder", ac.folder.ID).Str("path", "/"+p).Msg("directory download cut short")
		panic(http.ErrAbortHandler)
	}
	return nil
}

// issue signs a token (admins only, never with a token).
func (a *API) issue(w http.ResponseWriter, r *http.Request) {
	if _, err := params(r); err != nil {
		a.fail(w, r, err)
		return
	}
	c, err := a.callerOf(r)
	if err == nil && !c.admin {
		err = fmt.Errorf("%w: only root and the admin group issue tokens", service.ErrForbidden)
	}
	if err != nil {
		a.fail(w, r, err)
		return
	}
	var req api.TokenRequest
	if err := decode(r, &req); err != nil {
		a.fail(w, r, err)
		return
	}
	t, err := a.Issue(r.Context(), req, time.Now())
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, t)
}

// Issue signs a token for req. The user must reach the folder it names
// now; the permission is checked again on every use.
func (a *API) Issue(ctx context.Context, req api.TokenRequest, now time.Time) (api.Token, error) {
	user, err := meta.ParseUUID(req.User)
	if err != nil {
		return api.Token{}, fmt.Errorf("user: %w", err)
	}
	perm := req.Perm
	if perm == "" {
		perm = meta.PermRW
	}
	if !perm.Valid() {
		return api.Token{}, fmt.Errorf("%w: perm %q is none of ro, rw, wd", meta.ErrInvalid, perm)
	}
	ttl := api.DefaultTokenTTL
	if req.TTLSeconds < 0 || req.TTLSeconds > int64(api.MaxTokenTTL/time.Second) {
		return api.Token{}, fmt.Errorf("%w: ttl must be between 1 second and %s", meta.ErrInvalid, api.MaxTokenTTL)
	}
	if req.TTLSeconds > 0 {
		ttl = time.Duration(req.TTLSeconds) * time.Second
	}
	owner, err := parseOwner(req.Owner)
	if err != nil {
		return api.Token{}, err
	}
	var folder string
	if req.Folder != "" {
		ac, err := a.resolve(ctx, caller{claims: &Claims{RegisteredClaims: jwtSubject(user), Perm: perm}}, req.Folder, owner)
		if err != nil {
			return api.Token{}, err
		}
		folder = ac.folder.ID
	}
	exp := now.Add(ttl).Truncate(time.Second)
	c := Claims{RegisteredClaims: jwtSubject(user), Folder: folder, Perm: perm}
	c.IssuedAt = jwtTime(now)
	c.ExpiresAt = jwtTime(exp)
	tok, err := SignToken(a.key, c)
	if err != nil {
		return api.Token{}, err
	}
	a.log.Info().Str("user", user).Str("folder", folder).Str("perm", string(perm)).Time("expires", exp).Msg("file API token issued")
	return api.Token{Token: tok, User: user, FolderID: folder, Perm: perm, ExpiresAt: exp.UTC()}, nil
}
