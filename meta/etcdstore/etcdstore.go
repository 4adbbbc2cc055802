// Package etcdstore is the meta.Store of cluster mode: the metadata lives
// in an etcd cluster (v3 API, etcd 3.4 and newer) that every node's
// vfolderd shares, through go.etcd.io/etcd/client/v3. It passes the same
// conformance suite (meta/metatest) as the node-local stores, and it is a
// meta.Watcher: a node learns of the changes the other nodes make.
//
// # Key layout
//
// Everything lives under a configurable prefix P (default "/vfolder/"),
// the records of this package below P+"m/"; other packages may keep keys
// of their own under P outside "m/".
//
//	P m/schema                          decimal layout version ("1")
//	P m/vol/<volume>                    Volume
//	P m/scope/<volume>/<scope-id>       QuotaScope
//	P m/folder/<id>                     Folder
//	P m/name/<owner>/<name>             id of the owner's folder of that name
//	P m/count/<owner>                   decimal number of folder records of owner
//	P m/policy/<owner>                  Policy
//	P m/member/<project>/<user>         Membership
//	P m/memberof/<user>/<project>       the same Membership, indexed by user
//	P m/session/<id>                    Session
//	P m/sessfolder/<folder>/<session>   empty: the folder index of a session
//	P m/sessbulk/<session>              the folder ids of a session with many
//
// With Options.SessionNamespace N (cluster mode sets it to the node id)
// the three session families live under P m/node/N/ instead
// (P m/node/N/session/<id> and so on), and every session method, Load and
// Watch see only those: each node's sessions are its own, so that a
// restarted node reconciles its sessions and no other node's, and a stop
// is refused for the sessions of the node being stopped only. The
// meta.Store contract holds within a namespace (metatest runs with one);
// which nodes mount a folder across the cluster is package cluster's
// business (leased claims), not the session index's.
//
// Records (and the bulk index lists) are versioned JSON,
// {"v":1,"data":<record>}: a record of a newer version is refused with
// meta.ErrSchemaTooNew, one without a version with meta.ErrCorrupt; the
// name and count keys hold plain text. Volume names, owner ids, UUIDs,
// session ids and folder names never contain '/', so every prefix above
// is unambiguous. A membership is stored twice (under the project and
// under the user, written and removed together) so that ListMembers and
// ProjectsOf are one range read each.
//
// # Transactions
//
// Every write method is one etcd transaction (Txn), so a change is either
// visible completely or not at all, whenever the process or etcd dies. A
// method reads the keys it depends on (several keys in one request), works
// out its writes, and commits them in a Txn whose guard compares the
// ModRevision of every key it read with what it read (0 for a key that was
// absent). If another writer changed one of them in between, the Txn does
// nothing and the method starts over from the reads (compare-and-swap;
// up to 100 times, with a short random back-off, then meta.ErrConflict).
// Hence:
//
//   - name uniqueness per owner, cluster-wide: CreateFolder and a renaming
//     UpdateFolder read the name key (absent) and write it; of two racing
//     writers of one name the second finds its guard broken and, on the
//     next run, the name taken;
//   - the folder count limit: every CreateFolder and DeleteFolder of an
//     owner reads and writes the owner's count key, so they are serialised
//     per owner and maxCount holds exactly (etcd can compare single keys
//     only, never count a range inside a Txn);
//   - the callbacks of UpdateFolder and UpdateScope run again, on a fresh
//     copy of the record, whenever their compare-and-swap loses; only the
//     last run's result is written.
//
// The loop is this package's own rather than etcd's concurrency.STM: STM
// retries without bound, runs the callback in a goroutine of its own and
// reads single keys only, while the store needs a bounded time, its
// callers' errors passed through and range reads.
//
// Reads are linearizable (a quorum read). Methods that read many keys
// (lists, the session index, Load, Verify) read them at one revision, page
// by page (1000 keys a page), so that what they return is a state that
// existed. Nothing is cached: every call asks etcd, and a node that needs
// a local picture keeps one through the watcher.
//
// The session folder index: a session mounting up to 60 distinct folders
// has one key per folder (P m/sessfolder/<folder>/<session>), and
// PutSession adds and removes only the entries that change. etcd refuses
// a Txn of more than 128 operations (its default --max-txn-ops), so a
// session with more distinct folders (up to meta.MaxSessionMounts) is
// indexed by one key instead, P m/sessbulk/<session>, holding its folder
// ids; SessionsUsingFolder reads the folder's keys and the (rare) bulk
// keys at one revision. Either way record and index change in one Txn,
// of at most 121 operations: etcd must run with --max-txn-ops at its
// default or above. A record (a session) larger than 1 MiB is refused with
// meta.ErrInvalid: etcd's default request limit is 1.5 MiB.
//
// # Unavailability
//
// Every method is bounded by Options.RequestTimeout (default 5 s), its
// retries included. When etcd does not answer in time, or answers that it
// has no leader or no quorum, the method fails with an error wrapping
// meta.ErrUnavailable ("cluster store unreachable") that names the
// endpoints. A write whose request was sent may still have been applied
// (the answer, not the request, may be what was lost); it was applied
// completely or not at all, and the error says the outcome is unknown.
// This is the one way in which the store differs from the node-local ones,
// whose failures never change anything; the meta.Store contract allows it
// for ErrUnavailable only. If the caller's context ends first, its error
// is returned instead. A full etcd (its NOSPACE alarm raised) refuses
// writes: they fail with meta.ErrUnavailable too, saying so.
//
// # Concurrency
//
// A Store is safe for concurrent use: every method runs on its own; the
// store's own lock is held shared by each method and exclusively by Close,
// which therefore waits for the methods in flight (each bounded by
// RequestTimeout) and ends the watches. Other processes and nodes using
// the same prefix are coordinated by the transactions above only.
//
// # Watching
//
// Load reads every record below P m/ at one revision R and returns it as
// Snapshot.Rev; Watch(ctx, R) follows etcd's watch on P m/ from R+1, so a
// snapshot and its stream miss nothing and repeat nothing. Each change of
// a record key becomes a meta.Event (index keys are skipped); a removal
// carries the record as it was (etcd's previous value). The stream ends
// with a meta.EventResync when etcd compacted the revisions it needs, cancels the
// watch (for instance because the member lost its leader: watches are
// opened with clientv3.WithRequireLeader), or when the connection to etcd
// is lost (the gRPC connection leaves the ready state, which covers etcd
// restarting): etcd's client would resume the watch silently, but a
// restarted etcd may have been restored from a backup with other
// revisions, so the consumer reloads instead. A hung server is noticed by
// the gRPC keepalive (10 s, then 3 s without an answer). While etcd is
// away the client tries to reconnect at least every 2 s (gRPC's own
// back-off would grow to 2 minutes), so the store works again within
// about 2 s of etcd's return.
//
// # Logging
//
// The etcd client logs through zap; it is given a logger that forwards to
// the store's zerolog logger at debug level (retry warnings and the like
// are what the errors above already say), so the daemon stays quiet.
package etcdstore

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/vfolder/vfolder/meta"
)

// Defaults of Options.
const (
	DefaultPrefix         = "/vfolder/"
	DefaultDialTimeout    = 5 * time.Second
	DefaultRequestTimeout = 5 * time.Second
)

// SchemaVersion is the key layout version this build writes at P m/schema;
// Open refuses a prefix that holds a higher one.
const SchemaVersion = 1

// recordVersion is the version of the JSON envelope of records.
const recordVersion = 1

const (
	// maxAttempts bounds the compare-and-swap runs of one method.
	maxAttempts = 100
	// maxIndexedFolders is the most distinct folders of a session that get
	// one index key each; see the package comment.
	maxIndexedFolders = 60
	// maxTxnOps is etcd's default --max-txn-ops.
	maxTxnOps = 128
	// maxRecordBytes bounds one encoded record.
	maxRecordBytes = 1 << 20
	// getBatch is how many single-key reads go into one read-only Txn.
	getBatch = 64
	// defaultPage is how many keys one range request of a list returns.
	defaultPage = 1000
	// reconnectMax is the longest pause between attempts to reconnect.
	reconnectMax = 2 * time.Second
)

// Options configure Open.
type Options struct {
	// Endpoints are the etcd client URLs (http://host:2379,
	// https://host:2379). Required unless Client is set.
	Endpoints []string
	// CAFile, CertFile and KeyFile are PEM files for TLS: the CA that
	// signed the servers' certificates, and the client certificate and key
	// that etcd's --client-cert-auth checks. CAFile alone verifies the
	// servers without a client certificate. With none, TLS is used only
	// for https endpoints, with the system's roots.
	CAFile, CertFile, KeyFile string
	// DialTimeout bounds establishing a connection (default 5 s).
	DialTimeout time.Duration
	// RequestTimeout bounds every Store method, retries included
	// (default 5 s); past it the method fails with meta.ErrUnavailable.
	RequestTimeout time.Duration
	// Prefix is where the keys live (default "/vfolder/"); a "/" is
	// appended if missing. Stores on distinct prefixes are independent.
	Prefix string
	// Log receives the store's and the etcd client's logs (the client's
	// at debug level). The zero Logger discards them.
	Log zerolog.Logger
	// Client, if set, is used instead of dialling Endpoints (the TLS and
	// timeout-of-dial options are then unused); Close leaves it open.
	Client *clientv3.Client
	// SessionNamespace, if set, keeps the session records and their
	// folder index under P m/node/<SessionNamespace>/ (see the package
	// comment): 1-63 characters of letters, digits, '.', '_', '-'.
	SessionNamespace string

	// page is the range page size (tests make it small).
	page int64
}

// Store is the meta.Store on etcd. See the package comment.
type Store struct {
	cli       *clientv3.Client
	ownClient bool
	root      string // P
	pfx       string // P + "m/"
	spfx      string // where the session families live: pfx, or pfx + "node/<ns>/"
	timeout   time.Duration
	endpoints string
	log       zerolog.Logger
	page      int64

	// bg ends when the store closes: watches stop with it.
	bg   context.Context
	stop context.CancelFunc

	mu     sync.RWMutex // held shared by every method, exclusively by Close
	closed bool
}

var (
	_ meta.Store   = (*Store)(nil)
	_ meta.Watcher = (*Store)(nil)
)

// namespaceRE is the form of Options.SessionNamespace (a node id).
var namespaceRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`)

// errBound is the cause of a method's own deadline.
var errBound = errors.New("request timeout")

// Open connects to etcd and checks (creating it on first use) the layout
// version under the prefix. It fails with meta.ErrUnavailable when etcd
// does not answer within RequestTimeout, with meta.ErrSchemaTooNew when the
// prefix holds a newer layout, and with meta.ErrInvalid for bad options.
func Open(ctx context.Context, o Options) (*Store, error) {
	if o.DialTimeout <= 0 {
		o.DialTimeout = DefaultDialTimeout
	}
	if o.RequestTimeout <= 0 {
		o.RequestTimeout = DefaultRequestTimeout
	}
	if o.Prefix == "" {
		o.Prefix = DefaultPrefix
	}
	if !strings.HasSuffix(o.Prefix, "/") {
		o.Prefix += "/"
	}
	if o.page <= 0 {
		o.page = defaultPage
	}
	if ns := o.SessionNamespace; ns != "" && !namespaceRE.MatchString(ns) {
		return nil, fmt.Errorf("%w: etcdstore: session namespace %q: 1-63 characters of letters, digits, '.', '_', '-', starting with a letter or digit", meta.ErrInvalid, ns)
	}
	log := o.Log.With().Str("component", "meta").Str("store", "etcd").Logger()
	s := &Store{
		root:    o.Prefix,
		pfx:     o.Prefix + "m/",
		spfx:    o.Prefix + "m/",
		timeout: o.RequestTimeout,
		log:     log,
		page:    o.page,
	}
	if o.SessionNamespace != "" {
		s.spfx = s.pfx + "node/" + o.SessionNamespace + "/"
	}
	if o.Client != nil {
		s.cli = o.Client
		s.endpoints = strings.Join(o.Client.Endpoints(), ",")
	} else {
		if len(o.Endpoints) == 0 {
			return nil, fmt.Errorf("%w: etcdstore: no etcd endpoints given", meta.ErrInvalid)
		}
		var tlsCfg *tls.Config
		if o.CAFile != "" || o.CertFile != "" || o.KeyFile != "" {
			if (o.CertFile == "") != (o.KeyFile == "") {
				return nil, fmt.Errorf("%w: etcdstore: a client certificate needs both its certificate and its key file", meta.ErrInvalid)
			}
			info := transport.TLSInfo{CertFile: o.CertFile, KeyFile: o.KeyFile, TrustedCAFile: o.CAFile}
			c, err := info.ClientConfig()
			if err != nil {
				return nil, fmt.Errorf("%w: etcdstore: TLS files: %v", meta.ErrInvalid, err)
			}
			tlsCfg = c
		}
		cli, err := clientv3.New(clientv3.Config{
			Endpoints:            o.Endpoints,
			DialTimeout:          o.DialTimeout,
			DialKeepAliveTime:    10 * time.Second,
			DialKeepAliveTimeout: 3 * time.Second,
			TLS:                  tlsCfg,
			Logger:               zapLogger(log),
			// gRPC's default reconnect back-off grows to 2 minutes: after
			// a long outage the store would come back long after etcd.
			DialOptions: []grpc.DialOption{grpc.WithConnectParams(grpc.ConnectParams{
				Backoff:           backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: reconnectMax},
				MinConnectTimeout: o.DialTimeout,
			})},
		})
		if err != nil {
			return nil, fmt.Errorf("%w: etcdstore: etcd client for %s: %v", meta.ErrInvalid, strings.Join(o.Endpoints, ","), err)
		}
		s.cli, s.ownClient = cli, true
		s.endpoints = strings.Join(o.Endpoints, ",")
	}
	s.bg, s.stop = context.WithCancel(context.Background())
	if err := s.checkSchema(ctx); err != nil {
		s.Close()
		return nil, err
	}
	log.Debug().Str("endpoints", s.endpoints).Str("prefix", s.root).Msg("metadata store open")
	return s, nil
}

func (s *Store) checkSchema(ctx context.Context) error {
	ctx, done, err := s.begin(ctx)
	if err != nil {
		return err
	}
	defer done()
	key := s.pfx + "schema"
	resp, err := s.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
		Then(clientv3.OpPut(key, strconv.Itoa(SchemaVersion))).
		Else(clientv3.OpGet(key)).
		Commit()
	if err != nil {
		return s.fail(ctx, "check the layout version", true, err)
	}
	if resp.Succeeded {
		return nil
	}
	kvs := resp.Responses[0].GetResponseRange().Kvs
	if len(kvs) != 1 {
		return fmt.Errorf("%w: etcdstore: %s vanished while it was read", meta.ErrConflict, key)
	}
	v, err := strconv.Atoi(string(kvs[0].Value))
	if err != nil || v < 1 {
		return fmt.Errorf("%w: etcdstore: %s is %q, not a positive number", meta.ErrCorrupt, key, kvs[0].Value)
	}
	if v > SchemaVersion {
		return fmt.Errorf("%w: etcdstore: %s holds metadata layout version %d, this build understands up to %d; use a newer vfolderd",
			meta.ErrSchemaTooNew, s.root, v, SchemaVersion)
	}
	return nil
}

// Client returns the etcd client, so that other packages can keep keys
// of their own under Prefix (outside "m/").
func (s *Store) Client() *clientv3.Client { return s.cli }

// Prefix returns the store's key prefix (with its trailing "/").
func (s *Store) Prefix() string { return s.root }

// Close ends the store's watches and, unless the client was given in
// Options, closes the client, after in-flight methods have finished.
// Closing again is a no-op.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	s.stop()
	if !s.ownClient {
		return nil
	}
	if err := s.cli.Close(); err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("etcdstore: close the etcd client: %w", err)
	}
	return nil
}

// begin starts a method: it holds the store open and bounds the method's
// time. done must be called when the method returns.
func (s *Store) begin(ctx context.Context) (context.Context, func(), error) {
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return nil, nil, meta.ErrClosed
	}
	if err := ctx.Err(); err != nil {
		s.mu.RUnlock()
		return nil, nil, err
	}
	c, cancel := context.WithTimeoutCause(ctx, s.timeout, errBound)
	return c, func() { cancel(); s.mu.RUnlock() }, nil
}

// fail turns an error of the etcd client into the store's: ErrUnavailable
// for a method that ran out of its time or a cluster that cannot serve,
// the caller's own context error, or an internal error with detail. sent
// tells whether a write request may have reached etcd.
func (s *Store) fail(ctx context.Context, what string, sent bool, err error) error {
	if err == nil {
		return nil
	}
	for _, sentinel := range []error{meta.ErrUnavailable, meta.ErrClosed, meta.ErrNotFound, meta.ErrExists, meta.ErrInvalid,
		meta.ErrLimitExceeded, meta.ErrConflict, meta.ErrCorrupt, meta.ErrSchemaTooNew} {
		if errors.Is(err, sentinel) { // the store's own answer, already with its detail
			return err
		}
	}
	outcome := ""
	if sent {
		outcome = "; the change may or may not have been applied"
	}
	if serverDeadline(err) {
		// The server ran out of the deadline the request carried, which is
		// ctx's: ctx ends at about the same time, and its cause says whose
		// deadline it was.
		<-ctx.Done()
	}
	if ctx.Err() != nil {
		if context.Cause(ctx) == errBound {
			return fmt.Errorf("%w: %s: etcd at %s did not answer within %v%s", meta.ErrUnavailable, what, s.endpoints, s.timeout, outcome)
		}
		return fmt.Errorf("etcdstore: %s: %w", what, context.Cause(ctx))
	}
	code := codes.Unknown
	var ee rpctypes.EtcdError
	if errors.As(err, &ee) {
		code = ee.Code()
	} else if st, ok := status.FromError(err); ok {
		code = st.Code()
	}
	switch {
	case code == codes.Unavailable || code == codes.DeadlineExceeded:
		return fmt.Errorf("%w: %s: etcd at %s: %v%s", meta.ErrUnavailable, what, s.endpoints, err, outcome)
	case errors.Is(err, rpctypes.ErrNoSpace) || errors.Is(err, rpctypes.ErrGRPCNoSpace):
		return fmt.Errorf("%w: %s: etcd at %s is out of space and refuses writes (its NOSPACE alarm is raised)", meta.ErrUnavailable, what, s.endpoints)
	case errors.Is(err, rpctypes.ErrRequestTooLarge) || errors.Is(err, rpctypes.ErrGRPCRequestTooLarge):
		return fmt.Errorf("%w: %s: the request is larger than etcd at %s accepts (--max-request-bytes)", meta.ErrInvalid, what, s.endpoints)
	}
	return fmt.Errorf("etcdstore: %s: %w", what, err)
}

// serverDeadline reports the error of a server that gave up on a request
// because the request's deadline passed (etcd answers "context deadline
// exceeded" without a gRPC code of its own).
func serverDeadline(err error) bool {
	st, ok := status.FromError(err)
	return ok && (st.Code() == codes.Unknown || st.Code() == codes.DeadlineExceeded) && st.Message() == context.DeadlineExceeded.Error()
}

// ---- values ----

// envelope is the versioned JSON form of a record.
type envelope[T any] struct {
	V    int `json:"v"`
	Data *T  `json:"data"`
}

func encode[T any](v T) (string, error) {
	b, err := json.Marshal(envelope[T]{V: recordVersion, Data: &v})
	if err != nil {
		return "", fmt.Errorf("etcdstore: encode %T: %w", v, err)
	}
	if len(b) > maxRecordBytes {
		return "", fmt.Errorf("%w: the %T record is %d bytes encoded; the cluster store keeps records of up to %d bytes",
			meta.ErrInvalid, v, len(b), maxRecordBytes)
	}
	return string(b), nil
}

func decode[T any](key, val []byte) (T, error) {
	var zero T
	var e envelope[T]
	if err := json.Unmarshal(val, &e); err != nil {
		return zero, fmt.Errorf("%w: etcdstore: key %q: %v", meta.ErrCorrupt, key, err)
	}
	switch {
	case e.V > recordVersion:
		return zero, fmt.Errorf("%w: etcdstore: key %q holds a record of version %d, this build understands up to %d",
			meta.ErrSchemaTooNew, key, e.V, recordVersion)
	case e.V < 1 || e.Data == nil:
		return zero, fmt.Errorf("%w: etcdstore: key %q holds no versioned record", meta.ErrCorrupt, key)
	}
	return *e.Data, nil
}

// ---- keys ----

func (s *Store) volumeKey(name string) string { return s.pfx + "vol/" + name }

func (s *Store) scopeKey(volume string, id meta.ScopeID) string {
	return s.pfx + "scope/" + volume + "/" + id.String()
}

func (s *Store) folderKey(id string) string { return s.pfx + "folder/" + id }

func (s *Store) nameKey(owner meta.ScopeID, name string) string {
	return s.pfx + "name/" + owner.String() + "/" + name
}

func (s *Store) countKey(owner meta.ScopeID) string { return s.pfx + "count/" + owner.String() }

func (s *Store) policyKey(owner meta.ScopeID) string { return s.pfx + "policy/" + owner.String() }

func (s *Store) memberKey(project, user string) string {
	return s.pfx + "member/" + project + "/" + user
}

func (s *Store) memberOfKey(user, project string) string {
	return s.pfx + "memberof/" + user + "/" + project
}

func (s *Store) sessionKey(id string) string { return s.spfx + "session/" + id }

func (s *Store) sessFolderKey(folder, session string) string {
	return s.spfx + "sessfolder/" + folder + "/" + session
}

func (s *Store) sessBulkKey(session string) string { return s.spfx + "sessbulk/" + session }

// ---- transactions ----

// txn collects the reads and writes of one run of a write method.
type txn struct {
	s    *Store
	ctx  context.Context
	what string
	read map[string]*mvccpb.KeyValue // every key read; nil if it was absent
	ops  []clientv3.Op
	keys map[string]bool // keys written, to catch a key written twice
}

// get reads the keys not read yet, in one request.
func (t *txn) get(keys ...string) error {
	var want []string
	for _, k := range keys {
		if _, ok := t.read[k]; !ok && !slices.Contains(want, k) {
			want = append(want, k)
		}
	}
	if len(want) == 0 {
		return nil
	}
	got, _, err := t.s.getKeys(t.ctx, want, 0)
	if err != nil {
		return t.s.fail(t.ctx, t.what, false, err)
	}
	for _, k := range want {
		t.read[k] = got[k]
	}
	return nil
}

// kv returns what get read for key (nil if absent).
func (t *txn) kv(key string) *mvccpb.KeyValue {
	kv, ok := t.read[key]
	if !ok {
		panic("etcdstore: key " + key + " used before it was read")
	}
	return kv
}

func (t *txn) put(key, val string) {
	t.wrote(key)
	t.ops = append(t.ops, clientv3.OpPut(key, val))
}

func (t *txn) del(key string) {
	t.wrote(key)
	t.ops = append(t.ops, clientv3.OpDelete(key))
}

func (t *txn) wrote(key string) {
	if t.keys[key] {
		panic("etcdstore: key " + key + " written twice in one transaction")
	}
	t.keys[key] = true
}

// update runs fn and commits what it wrote, guarded by the ModRevision of
// everything it read, running it again when the guard fails (see the
// package comment). An error of fn is returned as it is.
func (s *Store) update(ctx context.Context, what string, fn func(t *txn) error) error {
	ctx, done, err := s.begin(ctx)
	if err != nil {
		return err
	}
	defer done()
	for attempt := 1; ; attempt++ {
		t := &txn{s: s, ctx: ctx, what: what, read: map[string]*mvccpb.KeyValue{}, keys: map[string]bool{}}
		if err := fn(t); err != nil {
			return err
		}
		if len(t.ops) == 0 {
			return nil
		}
		cmps := make([]clientv3.Cmp, 0, len(t.read))
		for k, kv := range t.read {
			var rev int64
			if kv != nil {
				rev = kv.ModRevision
			}
			cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(k), "=", rev))
		}
		if len(t.ops) > maxTxnOps || len(cmps) > maxTxnOps {
			return fmt.Errorf("etcdstore: %s: %d operations and %d compares exceed etcd's %d per transaction", what, len(t.ops), len(cmps), maxTxnOps)
		}
		resp, err := s.cli.Txn(ctx).If(cmps...).Then(t.ops...).Commit()
		if err != nil {
			return s.fail(ctx, what, true, err)
		}
		if resp.Succeeded {
			return nil
		}
		if attempt >= maxAttempts {
			return fmt.Errorf("%w: %s: the transaction lost %d conflicts in a row", meta.ErrConflict, what, attempt)
		}
		backoff := time.Duration(rand.Int64N(int64(min(attempt, 20)) * int64(500*time.Microsecond)))
		s.log.Trace().Str("op", what).Int("attempt", attempt).Dur("backoff", backoff).Msg("transaction conflict, retrying")
		select {
		case <-ctx.Done():
			return s.fail(ctx, what, false, ctx.Err())
		case <-time.After(backoff):
		}
	}
}

// read runs fn with a bounded context for a read-only method.
func (s *Store) read(ctx context.Context, what string, fn func(ctx context.Context) error) error {
	ctx, done, err := s.begin(ctx)
	if err != nil {
		return err
	}
	defer done()
	return s.fail(ctx, what, false, fn(ctx))
}

// getKeys reads single keys at one revision (rev, or the current one if
// rev is 0), a batch per request. Absent keys map to nil. It returns the
// revision read at.
func (s *Store) getKeys(ctx context.Context, keys []string, rev int64) (map[string]*mvccpb.KeyValue, int64, error) {
	out := make(map[string]*mvccpb.KeyValue, len(keys))
	for len(keys) > 0 {
		n := min(len(keys), getBatch)
		ops := make([]clientv3.Op, n)
		for i, k := range keys[:n] {
			if rev > 0 {
				ops[i] = clientv3.OpGet(k, clientv3.WithRev(rev))
			} else {
				ops[i] = clientv3.OpGet(k)
			}
		}
		resp, err := s.cli.Txn(ctx).Then(ops...).Commit()
		if err != nil {
			return nil, 0, err
		}
		if rev == 0 {
			rev = resp.Header.Revision
		}
		for i, k := range keys[:n] {
			var kv *mvccpb.KeyValue
			if kvs := resp.Responses[i].GetResponseRange().Kvs; len(kvs) > 0 {
				kv = kvs[0]
			}
			out[k] = kv
		}
		keys = keys[n:]
	}
	return out, rev, nil
}

// getOne reads one key; nil if it is absent.
func (s *Store) getOne(ctx context.Context, key string) (*mvccpb.KeyValue, error) {
	resp, err := s.cli.Get(ctx, key)
	if err != nil {
		return nil, err
	}
	if len(resp.Kvs) == 0 {
		return nil, nil
	}
	return resp.Kvs[0], nil
}

// scan reads every key below prefix at revision rev (the current one if
// rev is 0), page by page, in key order, and returns the revision read at.
func (s *Store) scan(ctx context.Context, prefix string, rev int64, keysOnly bool) ([]*mvccpb.KeyValue, int64, error) {
	end := clientv3.GetPrefixRangeEnd(prefix)
	var out []*mvccpb.KeyValue
	from := prefix
	for {
		opts := []clientv3.OpOption{clientv3.WithRange(end), clientv3.WithLimit(s.page)}
		if rev > 0 {
			opts = append(opts, clientv3.WithRev(rev))
		}
		if keysOnly {
			opts = append(opts, clientv3.WithKeysOnly())
		}
		resp, err := s.cli.Get(ctx, from, opts...)
		if err != nil {
			return nil, 0, err
		}
		if rev == 0 {
			rev = resp.Header.Revision
		}
		out = append(out, resp.Kvs...)
		if !resp.More || len(resp.Kvs) == 0 {
			return out, rev, nil
		}
		from = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
}

// decodeAll decodes the values of kvs.
func decodeAll[T any](kvs []*mvccpb.KeyValue) ([]T, error) {
	out := make([]T, 0, len(kvs))
	for _, kv := range kvs {
		v, err := decode[T](kv.Key, kv.Value)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, nil
}
