package server

// The audit log: one JSON line per API request that may change something
// (any method but GET and HEAD) and per request the server refused to a
// caller (403), whatever its method, written to the file the operator
// configured ([audit] file, --audit-log).
//
// A line holds:
//
//	time         when the request arrived (RFC 3339, UTC, nanoseconds)
//	transport    how the caller came: "socket" (the unix socket) or
//	             "tls" (the TLS listener, tls.go); the caller is what
//	             CallerOf says, the same identity the API authorized
//	uid gid pid  a socket caller, from SO_PEERCRED on its connection
//	             (absent over TLS: a TLS caller has no uid, and a 0 there
//	             would read as root)
//	remote       the peer address of a TLS connection
//	cert_subject cert_serial
//	             the verified client certificate of a TLS caller (its
//	             subject, and its serial number in hex); absent for a
//	             TLS caller that presented none
//	admin        whether the caller had the admin's rights (root or the
//	             admin group on the socket, a certificate of the admin's
//	             CA over TLS)
//	caller_error why the caller could not be identified (then every
//	             route answered 403)
//	method       the HTTP method
//	route        the route pattern ("POST /v1/folders/{ref}/trash"); the
//	             request path when no route matches
//	action       a readable name derived from the route ("folders.trash",
//	             "folders.create", "quota-scopes.set", see actionOf)
//	object       what the request names: the route's path parameters
//	             (ref, volume, scope, session, ...), the owner query
//	             parameter, and from a JSON body only the fields of
//	             auditFields (names, volumes, owners, modes, limits): a
//	             body is never copied whole, so nothing a future request
//	             carries beside those (a secret, a token) is written
//	status       the HTTP status answered
//	code, error  the api.Error code and message of a failure
//	duration_ms  how long the request took
//
// Writes are serialised by a mutex and go to a file opened O_APPEND
// (0600): a line is one write(2), so lines from a rotated file and the
// new one never mix. Reopen (on SIGHUP, for logrotate) opens the path
// again and swaps the file. A failed write or reopen is logged (at most
// once a minute) and never fails the request: auditing is not a reason
// to refuse service.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/vfolder/vfolder/api"
)

// AuditLog is the audit log file.
type AuditLog struct {
	path string
	log  zerolog.Logger

	mu       sync.Mutex
	f        *os.File
	lastWarn time.Time
	now      func() time.Time // tests
}

// OpenAudit opens (creating, 0600) the audit log at path for appending.
func OpenAudit(path string, log zerolog.Logger) (*AuditLog, error) {
	f, err := openAuditFile(path)
	if err != nil {
		return nil, err
	}
	return &AuditLog{path: path, log: log, f: f, now: time.Now}, nil
}

func openAuditFile(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("audit log: %w", err)
	}
	st, err := f.Stat()
	if err == nil && !st.Mode().IsRegular() {
		err = fmt.Errorf("audit log: %s is not a regular file", path)
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// Path is the file's path.
func (a *AuditLog) Path() string { return a.path }

// Reopen opens the path again (after logrotate moved the file away) and
// writes to the new file from now on. On failure the old file stays in
// use and the error is returned.
func (a *AuditLog) Reopen() error {
	f, err := openAuditFile(a.path)
	if err != nil {
		return err
	}
	a.mu.Lock()
	old := a.f
	a.f = f
	a.mu.Unlock()
	if old != nil {
		old.Close()
	}
	return nil
}

// Close closes the file; later lines are dropped.
func (a *AuditLog) Close() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.f == nil {
		return nil
	}
	err := a.f.Close()
	a.f = nil
	return err
}

// auditEntry is one line.
type auditEntry struct {
	Time        time.Time      `json:"time"`
	Transport   string         `json:"transport"`
	UID         *uint32        `json:"uid,omitempty"`
	GID         *uint32        `json:"gid,omitempty"`
	PID         *int32         `json:"pid,omitempty"`
	Remote      string         `json:"remote,omitempty"`
	CertSubject string         `json:"cert_subject,omitempty"`
	CertSerial  string         `json:"cert_serial,omitempty"`
	Admin       bool           `json:"admin"`
	CallerError string         `json:"caller_error,omitempty"`
	Method      string         `json:"method"`
	Route       string         `json:"route"`
	Action      string         `json:"action"`
	Object      map[string]any `json:"object,omitempty"`
	Status      int            `json:"status"`
	Code        string         `json:"code,omitempty"`
	Error       string         `json:"error,omitempty"`
	DurationMS  float64        `json:"duration_ms"`
}

func (a *AuditLog) write(e *auditEntry) {
	b, err := json.Marshal(e)
	if err != nil {
		a.warn(err)
		return
	}
	b = append(b, '\n')
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.f == nil {
		return
	}
	if _, err := a.f.Write(b); err != nil {
		a.warnLocked(err)
	}
}

func (a *AuditLog) warn(err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.warnLocked(err)
}

func (a *AuditLog) warnLocked(err error) {
	if now := a.now(); now.Sub(a.lastWarn) >= time.Minute {
		a.lastWarn = now
		a.log.Error().Err(err).Str("audit_log", a.path).Msg("cannot write the audit log; requests go on unaudited")
	}
}

// auditFields are the top-level fields of a JSON request body copied into
// the object (scalars only; arrays of objects keep these fields of each
// element, e.g. the mounts of a publish).
var auditFields = map[string]bool{
	"name": true, "new_name": true, "volume": true, "owner": true, "id": true,
	"usage_mode": true, "permission": true, "cloneable": true,
	"limit_bytes": true, "limit_inodes": true, "repair": true,
	"folder": true, "folder_id": true, "subpath": true, "target": true, "mode": true,
	"user": true, "uid": true, "gid": true, "pid": true, "session": true,
	"namespace": true, "key": true, "automount": true, "role": true,
	"mounts": true,
}

// maxAuditItems bounds the elements kept of an array in the body.
const maxAuditItems = 64

// maxAuditString bounds a string value kept from a body.
const maxAuditString = 256

// audit wraps h so that every audited request is written to the audit
// log (see the top of this file). Without an audit log it returns h.
func (s *Server) audit(h http.Handler) http.Handler {
	a := s.opts.Audit
	if a == nil {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Resolve the caller here, as Handler does (a TLS caller's
		// certificate is known only after the handshake), so that the
		// line names the caller the API authorized.
		p, _ := r.Context().Value(peerKey{}).(peer)
		r, _ = withPeer(r, p)
		if r.Method == http.MethodGet || r.Method == http.MethodHead {
			// A line only when refused; no body to keep.
			rec := &auditWriter{ResponseWriter: w}
			start := a.now()
			h.ServeHTTP(rec, r)
			if rec.status == http.StatusForbidden {
				s.writeAudit(a, r, rec, start, nil)
			}
			return
		}
		start := a.now()
		body := peekBody(r)
		rec := &auditWriter{ResponseWriter: w}
		h.ServeHTTP(rec, r)
		s.writeAudit(a, r, rec, start, body)
	})
}

func (s *Server) writeAudit(a *AuditLog, r *http.Request, rec *auditWriter, start time.Time, body map[string]any) {
	route := r.Pattern
	if route == "" {
		// Refused before the mux ran: find the route it would take.
		if _, pat := s.mux.Handler(r); pat != "" {
			route = pat
		}
	}
	status := rec.status
	if status == 0 {
		status = http.StatusOK
	}
	e := &auditEntry{
		Time: start.UTC(), Method: r.Method, Route: route, Status: status,
		DurationMS: float64(a.now().Sub(start).Microseconds()) / 1000,
	}
	setCaller(e, r)
	if route == "" {
		e.Route = r.URL.Path
		e.Action = "unknown"
	} else {
		e.Action = actionOf(route)
		e.Object = routeParams(route, r.URL.Path)
	}
	if owner := r.URL.Query().Get("owner"); owner != "" {
		e.Object = setObj(e.Object, "owner", clip(owner))
	}
	for k, v := range body {
		if _, taken := e.Object[k]; !taken {
			e.Object = setObj(e.Object, k, v)
		}
	}
	if status >= 400 && len(rec.errBody) > 0 {
		var ae api.Error
		if json.Unmarshal(rec.errBody, &ae) == nil {
			e.Code, e.Error = ae.Code, clip(ae.Message)
		}
	}
	a.write(e)
}

// setCaller fills in the caller of r as CallerOf tells it.
func setCaller(e *auditEntry, r *http.Request) {
	c, ok := CallerOf(r)
	if !ok {
		e.CallerError = "the request did not come through a listener of the server"
		return
	}
	e.Transport, e.Admin = c.Transport, c.Admin
	if c.Err != nil {
		e.CallerError = clip(c.Err.Error())
	}
	switch c.Transport {
	case TransportTLS:
		e.Remote = r.RemoteAddr
		e.CertSubject, e.CertSerial = clip(c.Subject), c.Serial
	default:
		if c.Err == nil {
			e.UID, e.GID, e.PID = &c.UID, &c.GID, &c.PID
		}
	}
}

func setObj(m map[string]any, k string, v any) map[string]any {
	if m == nil {
		m = map[string]any{}
	}
	m[k] = v
	return m
}

func clip(s string) string {
	if len(s) > maxAuditString {
		return s[:maxAuditString] + "..."
	}
	return s
}

// peekBody reads the request body (up to MaxBodyBytes, the handlers'
// own bound, plus one byte so that they still see an oversize body),
// puts it back for the handler and returns the auditFields of it when it
// is a JSON object.
func peekBody(r *http.Request) map[string]any {
	if r.Body == nil || r.Body == http.NoBody {
		return nil
	}
	b, err := io.ReadAll(io.LimitReader(r.Body, MaxBodyBytes+1))
	rest := r.Body
	r.Body = struct {
		io.Reader
		io.Closer
	}{io.MultiReader(bytes.NewReader(b), rest), rest}
	if err != nil || len(b) > MaxBodyBytes {
		return nil
	}
	var obj map[string]any
	if json.Unmarshal(b, &obj) != nil {
		return nil
	}
	return pickFields(obj)
}

// pickFields keeps the auditFields of obj.
func pickFields(obj map[string]any) map[string]any {
	out := map[string]any{}
	for k, v := range obj {
		if !auditFields[k] {
			continue
		}
		switch x := v.(type) {
		case string:
			out[k] = clip(x)
		case float64, bool:
			out[k] = x
		case []any:
			var items []any
			for i, it := range x {
				if i == maxAuditItems {
					break
				}
				switch y := it.(type) {
				case map[string]any:
					if m := pickFields(y); len(m) > 0 {
						items = append(items, m)
					}
				case string:
					items = append(items, clip(y))
				}
			}
			if len(items) > 0 {
				out[k] = items
			}
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// routeParams matches a route pattern ("POST /v1/folders/{ref}/trash")
// against a path and returns its {name} values.
func routeParams(route, path string) map[string]any {
	_, pat, _ := strings.Cut(route, " ")
	if pat == "" {
		pat = route
	}
	ps := strings.Split(strings.Trim(pat, "/"), "/")
	xs := strings.Split(strings.Trim(path, "/"), "/")
	var out map[string]any
	for i, seg := range ps {
		if i >= len(xs) {
			break
		}
		if strings.HasPrefix(seg, "{") && strings.HasSuffix(seg, "}") {
			name := strings.TrimSuffix(strings.TrimPrefix(seg, "{"), "}")
			name = strings.TrimSuffix(name, "...")
			v := xs[i]
			if strings.HasSuffix(seg, "...}") {
				v = strings.Join(xs[i:], "/")
			}
			out = setObj(out, name, clip(v))
		}
	}
	return out
}

// actionOf names what a route does: the literal segments after the
// version, joined by dots, then the verb. A route that ends in a literal
// after a parameter names its verb ("POST /v1/folders/{ref}/trash" ->
// "folders.trash"); otherwise the method does: POST creates, PUT sets,
// PATCH updates, DELETE deletes, GET gets ("PUT
// /v1/quota-scopes/{volume}/{scope}" -> "quota-scopes.set").
func actionOf(route string) string {
	method, pat, ok := strings.Cut(route, " ")
	if !ok {
		method, pat = "", route
	}
	segs := strings.Split(strings.Trim(pat, "/"), "/")
	if len(segs) > 0 && len(segs[0]) > 1 && segs[0][0] == 'v' && strings.Trim(segs[0][1:], "0123456789") == "" {
		segs = segs[1:]
	}
	var lits []string
	afterParam := false
	for i, s := range segs {
		if strings.HasPrefix(s, "{") {
			afterParam = true
			continue
		}
		if afterParam && i == len(segs)-1 && len(lits) > 0 {
			return strings.Join(lits, ".") + "." + s
		}
		lits = append(lits, s)
	}
	verb := map[string]string{
		http.MethodPost: "create", http.MethodPut: "set", http.MethodPatch: "update",
		http.MethodDelete: "delete", http.MethodGet: "get", http.MethodHead: "get",
	}[method]
	if verb == "" {
		verb = strings.ToLower(method)
	}
	if len(lits) == 0 {
		return verb
	}
	return strings.Join(lits, ".") + "." + verb
}

// auditWriter records the status and the body of an error answer.
type auditWriter struct {
	http.ResponseWriter
	status  int
	errBody []byte
}

func (w *auditWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *auditWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	if w.status >= 400 && len(w.errBody) < 64<<10 {
		w.errBody = append(w.errBody, b...)
	}
	return w.ResponseWriter.Write(b)
}

// Flush passes a flush on (streamed answers).
func (w *auditWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}
