// Package server is vfolderd's local API (the contract is package api):
// HTTP/JSON over a unix socket, a thin layer over internal/service.
//
// # Identity
//
// Each connection's peer is identified once, when it is accepted, by
// SO_PEERCRED. Root may call everything, and so may members of the admin
// group (the peer's primary gid, or a supplementary group read from
// /proc/<pid>/status); anyone else gets 403 on every path. The socket
// itself is created 0660 with the admin group as its group, so the check
// is a second line. The optional TLS listener (tls.go) serves the same
// handler: a verified client certificate of the admin's CA makes an admin
// caller, no certificate an anonymous one; CallerOf tells either kind to a
// handler or middleware.
//
// # Requests and errors
//
// Routes are Go 1.22 ServeMux method+path patterns, one per line of the
// contract, each registered with the query parameters it takes (handle
// refuses any other, and one given twice, before the handler runs).
// Request bodies are limited to 1 MiB and decoded strictly (unknown
// fields and trailing data are errors). Quota limits are checked field by
// field (decodeSetQuota) so that a negative, fractional, out-of-range or
// non-numeric limit gets a message naming the field and the rule. Every
// error, including unknown paths (404) and wrong methods (405), is an
// api.Error JSON body; its HTTP status follows from the code
// (service.Code maps errors to codes, api.StatusOf codes to statuses).
// Requests are logged at debug level; internal errors at error level;
// with Options.Audit, every request that may change something and every
// refused one also gets a JSON line in the audit log (audit.go). A
// quota check runs as long as its walk takes (no write timeout); the
// service ends it when the daemon stops.
//
// # Shutdown
//
// Shutdown stops accepting connections and waits for in-flight requests
// until its context ends; Close then cuts what is left. Handlers run on
// net/http's goroutines; the server keeps no state of its own besides the
// listener.
package server

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"

	"github.com/vfolder/vfolder/api"
	"github.com/vfolder/vfolder/internal/cluster"
	"github.com/vfolder/vfolder/internal/files"
	"github.com/vfolder/vfolder/internal/service"
	"github.com/vfolder/vfolder/meta"
)

// MaxBodyBytes bounds a request body.
const MaxBodyBytes = 1 << 20

// ErrSocketInUse: another process answers on the socket path.
var ErrSocketInUse = errors.New("socket is in use by another process")

// Options configure a Server.
type Options struct {
	// AdminGID is the group (besides root) allowed to call the API; -1 for
	// none.
	AdminGID int
	// Version is reported by /v1/health.
	Version string
	// StateDisk, when set, tells whether the state disk has room for
	// metadata changes: while it returns an error (matching
	// statedisk.ErrFull), every request that may change metadata is
	// refused with it (code state-disk-full, 507) before its handler
	// runs; reads, and taking session views away, go on.
	StateDisk func() error
	// Nodes lists the nodes for GET /v1/nodes: the cluster's registry, or
	// this node alone. nil answers 503.
	Nodes func(ctx context.Context) ([]cluster.Node, error)
	// NodeGrants returns the quota grants each node holds, by node id
	// (cluster quota); nil lists none.
	NodeGrants func(ctx context.Context) (map[string][]api.NodeGrant, error)
	// Audit, when set, gets a line for every request that may change
	// something and every refused one (audit.go).
	Audit *AuditLog
	// Files is the file API (package files); nil serves none.
	Files *files.API
	Log   zerolog.Logger
}

// Server serves the API.
type Server struct {
	svc  *service.Service
	opts Options
	log  zerolog.Logger
	mux  *http.ServeMux
	http *http.Server
	// public are the patterns registered with handlePublic; registered
	// lists every route (Routes). Both are written by routes() only.
	public     map[string]bool
	registered []Route
}

// New returns a server over svc.
func New(svc *service.Service, opts Options) *Server {
	if opts.Version == "" {
		opts.Version = "dev"
	}
	s := &Server{svc: svc, opts: opts, log: opts.Log, mux: http.NewServeMux()}
	s.routes()
	s.http = &http.Server{
		Handler:           s.audit(s.Handler()),
		ConnContext:       s.connContext,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
	}
	return s
}

// Serve accepts connections on l until Shutdown or Close; it returns nil
// after those.
func (s *Server) Serve(l net.Listener) error {
	err := s.http.Serve(l)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// Shutdown stops accepting and waits for in-flight requests until ctx ends.
func (s *Server) Shutdown(ctx context.Context) error { return s.http.Shutdown(ctx) }

// Close closes the listener and every connection at once.
func (s *Server) Close() error { return s.http.Close() }

// Listen binds the API socket at path. The parent directory is created
// (0755) if missing. An existing socket that something answers on is
// refused with ErrSocketInUse; a stale one (nobody listening) is
// removed; any other kind of file is refused. The new socket gets mode
// 0660 and, when adminGID >= 0, that group.
//
// Call it only after taking the state directory lock, so that a second
// daemon never removes the socket of a running one.
func Listen(path string, adminGID int) (*net.UnixListener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("socket directory: %w", err)
	}
	if st, err := os.Lstat(path); err == nil {
		if st.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("socket path %s exists and is not a socket; refusing to replace it", path)
		}
		c, err := net.DialTimeout("unix", path, time.Second)
		if err == nil {
			c.Close()
			return nil, fmt.Errorf("%w: %s answers connections (another vfolderd?)", ErrSocketInUse, path)
		}
		if !errors.Is(err, unix.ECONNREFUSED) {
			return nil, fmt.Errorf("socket %s exists and cannot be checked: %w", path, err)
		}
		if err := os.Remove(path); err != nil && !os.IsNotExist(err) {
			return nil, fmt.Errorf("remove stale socket: %w", err)
		}
	} else if !os.IsNotExist(err) {
		return nil, err
	}
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, err
	}
	// The listener must not remove the file on Close by itself: the daemon
	// removes it explicitly, after in-flight requests are done.
	l.SetUnlinkOnClose(false)
	err = os.Chmod(path, 0o660)
	if err == nil && adminGID >= 0 {
		err = os.Lchown(path, -1, adminGID)
	}
	if err != nil {
		l.Close()
		os.Remove(path)
		return nil, fmt.Errorf("socket %s: %w", path, err)
	}
	return l, nil
}

// peer is the identity of a connection's other end.
type peer struct {
	uid, gid uint32
	pid      int32
	allowed  bool
	err      error
	// tls: the caller came over the TLS listener (tls.go); subject and
	// serial name its verified client certificate.
	tls             bool
	subject, serial string
}

type peerKey struct{}

func (s *Server) connContext(ctx context.Context, c net.Conn) context.Context {
	p := peer{err: errors.New("not a unix socket connection")}
	if uc, ok := c.(*net.UnixConn); ok {
		p = identify(uc)
	} else if _, ok := c.(*tls.Conn); ok {
		// Identified per request, once the handshake is done (tls.go).
		return context.WithValue(ctx, peerKey{}, peer{tls: true})
	}
	if p.err == nil {
		p.allowed = s.allowed(p)
	}
	return context.WithValue(ctx, peerKey{}, p)
}

func identify(c *net.UnixConn) peer {
	raw, err := c.SyscallConn()
	if err != nil {
		return peer{err: err}
	}
	var cred *unix.Ucred
	var credErr error
	if err := raw.Control(func(fd uintptr) {
		cred, credErr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return peer{err: err}
	}
	if credErr != nil {
		return peer{err: credErr}
	}
	return peer{uid: cred.Uid, gid: cred.Gid, pid: cred.Pid}
}

func (s *Server) allowed(p peer) bool {
	if p.uid == 0 {
		return true
	}
	if s.opts.AdminGID < 0 {
		return false
	}
	if p.gid == uint32(s.opts.AdminGID) {
		return true
	}
	if p.pid <= 0 {
		return false
	}
	groups, err := procGroups(p.pid)
	if err != nil {
		return false
	}
	for _, g := range groups {
		if g == uint32(s.opts.AdminGID) {
			return true
		}
	}
	return false
}

// procGroups reads the supplementary groups of a process.
func procGroups(pid int32) ([]uint32, error) {
	f, err := os.Open("/proc/" + strconv.Itoa(int(pid)) + "/status")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), "Groups:")
		if !ok {
			continue
		}
		var out []uint32
		for _, field := range strings.Fields(rest) {
			n, err := strconv.ParseUint(field, 10, 32)
			if err != nil {
				return nil, err
			}
			out = append(out, uint32(n))
		}
		return out, nil
	}
	return nil, sc.Err()
}

// codeOf is the code of a status the mux produced itself.
func codeOf(status int) string {
	switch status {
	case http.StatusNotFound:
		return api.CodeNotFound
	case http.StatusMethodNotAllowed, http.StatusBadRequest:
		return api.CodeInvalid
	}
	return api.CodeInternal
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	_ = enc.Encode(v)
}

func (s *Server) writeError(w http.ResponseWriter, r *http.Request, code, msg string) {
	s.writeErrorStatus(w, r, api.StatusOf(code), code, msg)
}

func (s *Server) writeErrorStatus(w http.ResponseWriter, r *http.Request, status int, code, msg string) {
	if status >= 500 && code != api.CodeUnavailable {
		s.log.Error().Str("method", r.Method).Str("path", r.URL.Path).Str("error", msg).Msg("request failed")
	}
	writeJSON(w, status, &api.Error{Code: code, Message: msg})
}

// Handler is the API with identity checks, JSON errors for unknown paths
// and methods, and request logging. Requests must come through Serve (the
// identity is attached per connection).
func (s *Server) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &statusWriter{ResponseWriter: w}
		p, _ := r.Context().Value(peerKey{}).(peer)
		r, p = withPeer(r, p)
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				s.log.Error().Interface("panic", v).Str("path", r.URL.Path).Msg("handler panicked")
				if rec.status == 0 {
					s.writeError(rec, r, api.CodeInternal, "internal error")
				}
			}
			s.log.Debug().Str("method", r.Method).Str("path", r.URL.RequestURI()).Int("status", rec.status).
				Func(p.logFields).Dur("took", time.Since(start)).Msg("request")
		}()
		switch {
		case p.err != nil && !tokenRequest(r):
			s.writeError(rec, r, api.CodeForbidden, "cannot identify the caller: "+p.err.Error())
			return
		case !p.allowed && !s.isPublic(r) && !tokenRequest(r):
			s.writeError(rec, r, api.CodeForbidden, refusal(p))
			return
		}
		if !canonicalPath(r.URL.Path) {
			// The mux would answer with an HTML redirect to the cleaned
			// path; an API client gets a JSON error instead.
			s.writeErrorStatus(rec, r, http.StatusNotFound, api.CodeNotFound,
				fmt.Sprintf("%s %q is not part of the API (the path is not in canonical form)", r.Method, r.URL.Path))
			return
		}
		if h, pattern := s.mux.Handler(r); pattern == "" {
			// Let the mux decide between 404 and 405, then answer in JSON.
			probe := &probeWriter{header: http.Header{}}
			h.ServeHTTP(probe, r)
			if allow := probe.header.Get("Allow"); allow != "" {
				rec.Header().Set("Allow", allow)
			}
			msg := fmt.Sprintf("%s %s is not part of the API", r.Method, r.URL.Path)
			if probe.status == http.StatusMethodNotAllowed {
				msg = fmt.Sprintf("%s is not allowed on %s (allowed: %s)", r.Method, r.URL.Path, probe.header.Get("Allow"))
			}
			status := probe.status
			if status == 0 {
				status = http.StatusNotFound
			}
			// 405 keeps its own status; its code is "invalid".
			s.writeErrorStatus(rec, r, status, codeOf(status), msg)
			return
		}
		if s.opts.StateDisk != nil && changes(r) {
			if err := s.opts.StateDisk(); err != nil {
				s.writeError(rec, r, service.Code(err), err.Error())
				return
			}
		}
		s.mux.ServeHTTP(rec, r)
	})
}

// canonicalPath reports whether p is already in the form ServeMux
// redirects to: rooted, no empty, "." or ".." elements (a trailing slash
// is kept).
func canonicalPath(p string) bool {
	if p == "" || p[0] != '/' {
		return false
	}
	np := path.Clean(p)
	if p[len(p)-1] == '/' && np != "/" {
		np += "/"
	}
	return np == p
}

// changes tells whether a request may change metadata: anything but a
// read, except what only takes session mounts and views away (it must
// work while the state disk is short, as removals do in views).
func changes(r *http.Request) bool {
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		return false
	}
	p := r.URL.Path
	if r.Method == http.MethodDelete && strings.HasPrefix(p, "/v1/views/sessions/") {
		return false
	}
	if r.Method == http.MethodPost && strings.HasPrefix(p, "/v1/sessions/") && strings.HasSuffix(p, "/unpublish") {
		return false
	}
	return true
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// probeWriter records what the mux would answer, writing nothing.
type probeWriter struct {
	header http.Header
	status int
}

func (p *probeWriter) Header() http.Header         { return p.header }
func (p *probeWriter) Write(b []byte) (int, error) { return len(b), nil }
func (p *probeWriter) WriteHeader(code int)        { p.status = code }

// handlerFunc is an API handler: it gets the request and its query
// parameters (already checked against the route's) and returns the success
// status and body, or an error.
type handlerFunc func(r *http.Request, q url.Values) (int, any, error)

// handle registers h for pattern. params are the query parameters the
// route takes; any other parameter, or one given twice, is refused before
// h runs.
func (s *Server) handle(pattern string, h handlerFunc, params ...string) {
	s.registered = append(s.registered, newRoute(pattern, params, s.public[pattern]))
	s.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		var status int
		var body any
		q, err := query(r, params...)
		if err == nil {
			status, body, err = h(r, q)
		}
		if err != nil {
			s.writeError(w, r, service.Code(err), err.Error())
			return
		}
		writeJSON(w, status, body)
	})
}

func (s *Server) routes() {
	s.handle("GET /v1/health", s.health)
	s.handle("GET /v1/nodes", s.nodes)
	s.handle("GET /v1/volumes", s.volumes)
	s.handle("GET /v1/folders", s.listFolders, "owner", "volume", "deleted")
	s.handle("POST /v1/folders", s.createFolder)
	s.handle("GET /v1/folders/{ref}", s.getFolder, "owner")
	s.handle("POST /v1/folders/{ref}/rename", s.rename, "owner")
	s.handle("POST /v1/folders/{ref}/trash", s.trash, "owner")
	s.handle("POST /v1/folders/{ref}/restore", s.restore, "owner")
	s.handle("POST /v1/folders/{ref}/purge", s.purge, "owner")
	s.handle("GET /v1/folders/{ref}/usage", s.usage, "owner")
	s.handle("GET /v1/quota-scopes/{volume}/{scope}", s.getQuota)
	s.handle("PUT /v1/quota-scopes/{volume}/{scope}", s.setQuota)
	s.handle("DELETE /v1/quota-scopes/{volume}/{scope}", s.unsetQuota)
	s.handle("POST /v1/quota-scopes/{volume}/{scope}/check", s.checkQuota)
	s.handle("GET /v1/policies/{owner}", s.getPolicy)
	s.handle("PUT /v1/policies/{owner}", s.setPolicy)
	s.handle("GET /v1/views", s.listViews, "namespace", "key")
	s.handle("POST /v1/views", s.addView)
	s.handle("DELETE /v1/views/sessions/{session}/{name}", s.removeView)
	s.handle("GET /v1/projects/{project}/members", s.listMembers)
	s.handle("PUT /v1/projects/{project}/members/{user}", s.setMember)
	s.handle("DELETE /v1/projects/{project}/members/{user}", s.removeMember)
	s.handle("GET /v1/sessions", s.listSessions)
	s.handle("GET /v1/sessions/{session}", s.getSession)
	s.handle("POST /v1/sessions/{session}/publish", s.publish)
	s.handle("POST /v1/sessions/{session}/attach", s.attach)
	s.handle("POST /v1/sessions/{session}/unpublish", s.unpublish)
	s.sharingRoutes()
	s.cloneRoutes()
	s.optionsRoutes()
	s.sshkeyRoutes()
	s.filesRoutes()
}

func invalid(format string, a ...any) error {
	return fmt.Errorf("%w: %s", meta.ErrInvalid, fmt.Sprintf(format, a...))
}

// query checks that only the allowed parameters are present, each at most
// once, and returns them.
func query(r *http.Request, allowed ...string) (url.Values, error) {
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return nil, invalid("query string: %v", err)
	}
	for k, v := range q {
		if !slices.Contains(allowed, k) {
			if len(allowed) == 0 {
				return nil, invalid("unknown query parameter %q: this call takes none", k)
			}
			return nil, invalid("unknown query parameter %q (allowed: %s)", k, strings.Join(allowed, ", "))
		}
		if len(v) > 1 {
			return nil, invalid("query parameter %q is given %d times", k, len(v))
		}
	}
	return q, nil
}

// ownerParam parses the optional owner query parameter.
func ownerParam(q url.Values) (meta.ScopeID, error) {
	s := q.Get("owner")
	if s == "" {
		return meta.ScopeID{}, nil
	}
	id, err := meta.ParseScopeID(s)
	if err != nil {
		return meta.ScopeID{}, fmt.Errorf("owner: %w", err)
	}
	return id, nil
}

// decode reads a JSON body into v strictly: unknown fields, data after
// the JSON value and bodies over MaxBodyBytes are errors, and so is an
// empty body.
func decode(r *http.Request, v any) error { return decodeBody(r, v, false) }

// decodeOptional is decode where an empty body means the zero value.
func decodeOptional(r *http.Request, v any) error { return decodeBody(r, v, true) }

func decodeBody(r *http.Request, v any, optional bool) error {
	var mbe *http.MaxBytesError
	dec := json.NewDecoder(http.MaxBytesReader(nil, r.Body, MaxBodyBytes))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		switch {
		case errors.As(err, &mbe):
			return invalid("request body is larger than %d bytes", MaxBodyBytes)
		case errors.Is(err, io.EOF) && optional:
			return nil
		case errors.Is(err, io.EOF):
			return invalid("request body is empty; a JSON object is expected")
		}
		return invalid("request body: %v", strings.TrimPrefix(err.Error(), "json: "))
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		if errors.As(err, &mbe) {
			return invalid("request body is larger than %d bytes", MaxBodyBytes)
		}
		return invalid("request body has data after the JSON object")
	}
	return nil
}

func (s *Server) health(*http.Request, url.Values) (int, any, error) {
	return http.StatusOK, api.Health{Status: "ok", Version: s.opts.Version}, nil
}

func (s *Server) nodes(r *http.Request, _ url.Values) (int, any, error) {
	if s.opts.Nodes == nil {
		return 0, nil, fmt.Errorf("%w: this daemon keeps no node list", service.ErrUnavailable)
	}
	ns, err := s.opts.Nodes(r.Context())
	if err != nil {
		return 0, nil, err
	}
	var grants map[string][]api.NodeGrant
	if s.opts.NodeGrants != nil {
		if grants, err = s.opts.NodeGrants(r.Context()); err != nil {
			return 0, nil, err
		}
	}
	out := make([]api.Node, 0, len(ns))
	for _, n := range ns {
		an := api.Node{ID: n.ID, Hostname: n.Hostname, Version: n.Version, Status: n.Status, Self: n.Self,
			StartedAt: n.StartedAt, StoppedAt: n.StoppedAt, Sessions: []api.NodeSession{}}
		for _, ss := range n.Sessions {
			an.Sessions = append(an.Sessions, api.NodeSession{ID: ss.ID, Folders: ss.Folders})
		}
		an.Grants = grants[n.ID]
		out = append(out, an)
	}
	return http.StatusOK, out, nil
}

func (s *Server) volumes(r *http.Request, _ url.Values) (int, any, error) {
	v, err := s.svc.Volumes(r.Context())
	return http.StatusOK, v, err
}

func (s *Server) listFolders(r *http.Request, q url.Values) (int, any, error) {
	owner, err := ownerParam(q)
	if err != nil {
		return 0, nil, err
	}
	f, err := s.svc.ListFolders(r.Context(), service.ListFilter{Owner: owner, Volume: q.Get("volume"), Deleted: q.Get("deleted")})
	return http.StatusOK, f, err
}

func (s *Server) createFolder(r *http.Request, _ url.Values) (int, any, error) {
	var req api.CreateFolderRequest
	if err := decode(r, &req); err != nil {
		return 0, nil, err
	}
	f, err := s.svc.CreateFolder(r.Context(), req)
	return http.StatusCreated, f, err
}

func (s *Server) getFolder(r *http.Request, q url.Values) (int, any, error) {
	owner, err := ownerParam(q)
	if err != nil {
		return 0, nil, err
	}
	f, err := s.svc.Folder(r.Context(), r.PathValue("ref"), owner)
	return http.StatusOK, f, err
}

func (s *Server) rename(r *http.Request, q url.Values) (int, any, error) {
	owner, err := ownerParam(q)
	if err != nil {
		return 0, nil, err
	}
	var req api.RenameRequest
	if err := decode(r, &req); err != nil {
		return 0, nil, err
	}
	f, err := s.svc.Rename(r.Context(), r.PathValue("ref"), owner, req.NewName)
	return http.StatusOK, f, err
}

func (s *Server) trash(r *http.Request, q url.Values) (int, any, error) {
	owner, err := ownerParam(q)
	if err != nil {
		return 0, nil, err
	}
	f, err := s.svc.Trash(r.Context(), r.PathValue("ref"), owner)
	return http.StatusOK, f, err
}

func (s *Server) restore(r *http.Request, q url.Values) (int, any, error) {
	owner, err := ownerParam(q)
	if err != nil {
		return 0, nil, err
	}
	f, err := s.svc.Restore(r.Context(), r.PathValue("ref"), owner)
	return http.StatusOK, f, err
}

func (s *Server) purge(r *http.Request, q url.Values) (int, any, error) {
	owner, err := ownerParam(q)
	if err != nil {
		return 0, nil, err
	}
	var req api.PurgeRequest
	if err := decode(r, &req); err != nil {
		return 0, nil, err
	}
	f, err := s.svc.StartPurge(r.Context(), r.PathValue("ref"), owner, req.Confirm)
	return http.StatusOK, f, err
}

func (s *Server) usage(r *http.Request, q url.Values) (int, any, error) {
	owner, err := ownerParam(q)
	if err != nil {
		return 0, nil, err
	}
	u, err := s.svc.FolderUsage(r.Context(), r.PathValue("ref"), owner)
	return http.StatusOK, u, err
}

// scopeRef returns the {volume} and {scope} path values.
func scopeRef(r *http.Request) (string, meta.ScopeID, error) {
	id, err := meta.ParseScopeID(r.PathValue("scope"))
	if err != nil {
		return "", meta.ScopeID{}, err
	}
	return r.PathValue("volume"), id, nil
}

func (s *Server) getQuota(r *http.Request, _ url.Values) (int, any, error) {
	vol, id, err := scopeRef(r)
	if err != nil {
		return 0, nil, err
	}
	q, err := s.svc.QuotaScope(r.Context(), vol, id)
	return http.StatusOK, q, err
}

func (s *Server) setQuota(r *http.Request, _ url.Values) (int, any, error) {
	vol, id, err := scopeRef(r)
	if err != nil {
		return 0, nil, err
	}
	req, err := decodeSetQuota(r)
	if err != nil {
		return 0, nil, err
	}
	q, err := s.svc.SetQuota(r.Context(), vol, id, req)
	return http.StatusOK, q, err
}

// decodeSetQuota reads a SetQuotaRequest, checking each limit itself so
// that a bad value gets a message saying what is wrong with it.
func decodeSetQuota(r *http.Request) (api.SetQuotaRequest, error) {
	var raw struct {
		LimitBytes  json.RawMessage `json:"limit_bytes"`
		LimitInodes json.RawMessage `json:"limit_inodes"`
	}
	if err := decode(r, &raw); err != nil {
		return api.SetQuotaRequest{}, err
	}
	var req api.SetQuotaRequest
	var err error
	if req.LimitBytes, err = parseLimit("limit_bytes", "bytes", raw.LimitBytes); err != nil {
		return req, err
	}
	if req.LimitInodes, err = parseLimit("limit_inodes", "inodes", raw.LimitInodes); err != nil {
		return req, err
	}
	return req, nil
}

// parseLimit parses one limit field: absent or null is nil; otherwise a
// JSON integer from 0 to MaxInt64 (an integral value written with a
// fraction or exponent, such as 1e9, is accepted).
func parseLimit(field, unit string, raw json.RawMessage) (*int64, error) {
	t := strings.TrimSpace(string(raw))
	if t == "" || t == "null" {
		return nil, nil
	}
	rule := fmt.Sprintf("a whole number of %s from 0 (no limit) to %d", unit, int64(math.MaxInt64))
	if t[0] == '"' {
		var str string
		_ = json.Unmarshal(raw, &str)
		if len(str) > 40 {
			str = str[:40] + "..."
		}
		return nil, invalid("%s must be a JSON number, %s; got the string %q (sizes with units are for the CLI)", field, rule, str)
	}
	if n, err := strconv.ParseInt(t, 10, 64); err == nil {
		if n < 0 {
			return nil, invalid("%s %d is negative; it must be %s", field, n, rule)
		}
		return &n, nil
	}
	shown := t
	if len(shown) > 40 {
		shown = shown[:40] + "..."
	}
	v, ok := new(big.Rat).SetString(t)
	if !ok || !json.Valid(raw) || (t[0] != '-' && (t[0] < '0' || t[0] > '9')) {
		return nil, invalid("%s must be %s, not %s", field, rule, shown)
	}
	switch {
	case v.Sign() < 0:
		return nil, invalid("%s %s is negative; it must be %s", field, shown, rule)
	case !v.IsInt():
		return nil, invalid("%s %s is not a whole number of %s; it must be %s", field, shown, unit, rule)
	case !v.Num().IsInt64():
		return nil, invalid("%s %s is too large; it must be %s", field, shown, rule)
	}
	n := v.Num().Int64()
	return &n, nil
}

// checkQuota takes an optional body: none means no repair.
func (s *Server) checkQuota(r *http.Request, _ url.Values) (int, any, error) {
	vol, id, err := scopeRef(r)
	if err != nil {
		return 0, nil, err
	}
	var req api.QuotaCheckRequest
	if err := decodeOptional(r, &req); err != nil {
		return 0, nil, err
	}
	rep, err := s.svc.CheckQuota(r.Context(), vol, id, req.Repair)
	return http.StatusOK, rep, err
}

func (s *Server) unsetQuota(r *http.Request, _ url.Values) (int, any, error) {
	vol, id, err := scopeRef(r)
	if err != nil {
		return 0, nil, err
	}
	q, err := s.svc.UnsetQuota(r.Context(), vol, id)
	return http.StatusOK, q, err
}

func (s *Server) getPolicy(r *http.Request, _ url.Values) (int, any, error) {
	owner, err := meta.ParseScopeID(r.PathValue("owner"))
	if err != nil {
		return 0, nil, err
	}
	p, err := s.svc.Policy(r.Context(), owner)
	return http.StatusOK, p, err
}

func (s *Server) setPolicy(r *http.Request, _ url.Values) (int, any, error) {
	owner, err := meta.ParseScopeID(r.PathValue("owner"))
	if err != nil {
		return 0, nil, err
	}
	p, err := decodePolicy(r)
	if err != nil {
		return 0, nil, err
	}
	p, err = s.svc.SetPolicy(r.Context(), owner, p)
	return http.StatusOK, p, err
}

// decodePolicy reads a Policy, checking its sizes and counts like quota
// limits (absent or null means 0, no limit).
func decodePolicy(r *http.Request) (api.Policy, error) {
	var raw struct {
		MaxFolderCount    json.RawMessage `json:"max_vfolder_count"`
		MaxQuotaScopeSize json.RawMessage `json:"max_quota_scope_size"`
		// Absent or null: every volume permission; {}: none.
		Volumes map[string][]string `json:"allowed_volume_perms"`
	}
	if err := decode(r, &raw); err != nil {
		return api.Policy{}, err
	}
	p := api.Policy{Volumes: raw.Volumes}
	n, err := parseLimit("max_vfolder_count", "folders", raw.MaxFolderCount)
	if err != nil {
		return p, err
	}
	if n != nil {
		p.MaxFolderCount = int(*n)
	}
	if n, err = parseLimit("max_quota_scope_size", "bytes", raw.MaxQuotaScopeSize); err != nil {
		return p, err
	}
	if n != nil {
		p.MaxQuotaScopeSize = *n
	}
	return p, nil
}

func (s *Server) listViews(r *http.Request, q url.Values) (int, any, error) {
	v, err := s.svc.ListViews(r.Context(), q.Get("namespace"), q.Get("key"))
	return http.StatusOK, v, err
}

// addView answers 201 for a new view and 200 when the same view existed.
func (s *Server) addView(r *http.Request, _ url.Values) (int, any, error) {
	var req api.CreateViewRequest
	if err := decode(r, &req); err != nil {
		return 0, nil, err
	}
	v, created, err := s.svc.AddSessionView(r.Context(), req)
	if !created {
		return http.StatusOK, v, err
	}
	return http.StatusCreated, v, err
}

func (s *Server) removeView(r *http.Request, _ url.Values) (int, any, error) {
	v, err := s.svc.RemoveSessionView(r.Context(), r.PathValue("session"), r.PathValue("name"))
	return http.StatusOK, v, err
}

func (s *Server) listMembers(r *http.Request, _ url.Values) (int, any, error) {
	m, err := s.svc.Members(r.Context(), r.PathValue("project"))
	return http.StatusOK, m, err
}

// setMember takes an optional body: none means "each folder's own
// permission".
func (s *Server) setMember(r *http.Request, _ url.Values) (int, any, error) {
	var req api.SetMemberRequest
	if err := decodeOptional(r, &req); err != nil {
		return 0, nil, err
	}
	m, err := s.svc.SetMember(r.Context(), r.PathValue("project"), r.PathValue("user"), req.Permission)
	return http.StatusOK, m, err
}

func (s *Server) removeMember(r *http.Request, _ url.Values) (int, any, error) {
	m, err := s.svc.RemoveMember(r.Context(), r.PathValue("project"), r.PathValue("user"))
	return http.StatusOK, m, err
}

func (s *Server) listSessions(r *http.Request, _ url.Values) (int, any, error) {
	v, err := s.svc.Sessions(r.Context())
	return http.StatusOK, v, err
}

func (s *Server) getSession(r *http.Request, _ url.Values) (int, any, error) {
	v, err := s.svc.Session(r.Context(), r.PathValue("session"))
	return http.StatusOK, v, err
}

func (s *Server) publish(r *http.Request, _ url.Values) (int, any, error) {
	var req api.PublishRequest
	if err := decode(r, &req); err != nil {
		return 0, nil, err
	}
	v, err := s.svc.Publish(r.Context(), r.PathValue("session"), req)
	return http.StatusOK, v, err
}

func (s *Server) attach(r *http.Request, _ url.Values) (int, any, error) {
	var req api.AttachRequest
	if err := decode(r, &req); err != nil {
		return 0, nil, err
	}
	v, err := s.svc.Attach(r.Context(), r.PathValue("session"), req.PID)
	return http.StatusOK, v, err
}

// unpublish answers 200 whenever the session id is well-formed: what
// could not be removed is listed in the body.
func (s *Server) unpublish(r *http.Request, _ url.Values) (int, any, error) {
	if err := decodeOptional(r, &struct{}{}); err != nil {
		return 0, nil, err
	}
	v, err := s.svc.Unpublish(r.Context(), r.PathValue("session"))
	return http.StatusOK, v, err
}
