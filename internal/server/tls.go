package server

// This file is the API's second listener, for a manager on another host:
// HTTP/JSON over TCP with mutual TLS, serving the same routes and the same
// handler as the unix socket.
//
// # Identity over TLS
//
// The listener asks for a client certificate but does not require one
// (tls.VerifyClientCertIfGiven, TLS 1.3 only). A certificate that is given
// must chain to the admin's client CA (ClientCAFile), or the handshake
// fails and no request is read at all. A request on a connection that
// presented a verified certificate is an admin caller, with the same
// rights as root on the socket. A request without one is an anonymous
// caller: it gets 403 on every route except those registered with
// handlePublic, which authorize each request themselves (a bearer token).
//
// Every caller, socket or TLS, is a peer in the request's context; Caller
// exports it, so that a middleware (audit, per-route rules) asks one
// question, "is this caller admin?", whatever the transport.
//
// The certificate is read once, at start (ListenTLS); a new one needs a
// restart. Handshakes run on net/http's connection goroutines, never in
// the accept loop.

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"

	"github.com/rs/zerolog"
)

// Transports of a caller.
const (
	TransportSocket = "socket"
	TransportTLS    = "tls"
)

// Caller is who made a request, as the API sees it.
type Caller struct {
	// Transport is TransportSocket or TransportTLS.
	Transport string
	// UID, GID and PID are the socket peer's credentials (SO_PEERCRED);
	// zero over TLS.
	UID, GID uint32
	PID      int32
	// Subject and Serial name the verified client certificate over TLS
	// ("" without one).
	Subject string
	Serial  string
	// Admin: the caller may call every route (root or the admin group on
	// the socket; a certificate of the admin's CA over TLS).
	Admin bool
	// Err is why the caller could not be identified (then Admin is false).
	Err error
}

// CallerOf returns the caller of r; ok is false for a request that did not
// come through Serve.
func CallerOf(r *http.Request) (c Caller, ok bool) {
	p, ok := r.Context().Value(peerKey{}).(peer)
	if !ok {
		return Caller{}, false
	}
	return p.caller(), true
}

func (p peer) caller() Caller {
	c := Caller{Transport: TransportSocket, UID: p.uid, GID: p.gid, PID: p.pid, Admin: p.allowed && p.err == nil, Err: p.err}
	if p.tls {
		c = Caller{Transport: TransportTLS, Subject: p.subject, Serial: p.serial, Admin: p.allowed && p.err == nil, Err: p.err}
	}
	return c
}

// tlsPeer identifies the caller of a request that came over TLS from the
// connection state net/http recorded after the handshake.
func tlsPeer(st *tls.ConnectionState) peer {
	p := peer{tls: true}
	if st == nil {
		p.err = errors.New("TLS connection without a completed handshake")
		return p
	}
	if len(st.VerifiedChains) == 0 || len(st.VerifiedChains[0]) == 0 {
		// No certificate was given (a given one that does not verify
		// fails the handshake).
		return p
	}
	leaf := st.VerifiedChains[0][0]
	p.subject = leaf.Subject.String()
	p.serial = hex.EncodeToString(leaf.SerialNumber.Bytes())
	p.allowed = true
	return p
}

// refusal is the message of a caller that may not call a route.
func refusal(p peer) string {
	if p.tls {
		return "this route needs a client certificate issued by the admin's CA (vfolder --tls-cert/--tls-key); none was given"
	}
	return fmt.Sprintf("uid %d may not use the vfolderd API: only root and members of the admin group may", p.uid)
}

// withPeer resolves a TLS caller once per request: the identity depends on
// the handshake, which net/http completes after ConnContext ran.
func withPeer(r *http.Request, p peer) (*http.Request, peer) {
	if !p.tls {
		return r, p
	}
	p = tlsPeer(r.TLS)
	return r.WithContext(context.WithValue(r.Context(), peerKey{}, p)), p
}

// TLSFiles are the PEM files of the TLS listener.
type TLSFiles struct {
	// CertFile and KeyFile are the server's certificate (chain) and key.
	CertFile, KeyFile string
	// ClientCAFile holds the CA certificate(s) that sign admin client
	// certificates.
	ClientCAFile string
}

// TLSConfig builds the listener's configuration from files: TLS 1.3 at
// least, the server certificate, and client certificates verified against
// the client CA when given.
func TLSConfig(f TLSFiles) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(f.CertFile, f.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("API TLS certificate %s / key %s: %w", f.CertFile, f.KeyFile, err)
	}
	pem, err := os.ReadFile(f.ClientCAFile)
	if err != nil {
		return nil, fmt.Errorf("API client CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("API client CA %s holds no PEM certificate", f.ClientCAFile)
	}
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.VerifyClientCertIfGiven,
		ClientCAs:    pool,
		NextProtos:   []string{"http/1.1"},
	}, nil
}

// ListenTLS binds addr (host:port; port 0 picks one) and returns a
// listener that speaks TLS with cfg. Serve it like the socket.
func ListenTLS(addr string, cfg *tls.Config) (net.Listener, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("API listener %s: %w", addr, err)
	}
	return tls.NewListener(l, cfg), nil
}

// handlePublic registers h like handle, for a route that callers without
// admin rights may reach (over TLS without a certificate, or a socket peer
// outside the admin group): h must authorize each request itself, e.g. by
// a bearer token.
func (s *Server) handlePublic(pattern string, h handlerFunc, params ...string) {
	if s.public == nil {
		s.public = map[string]bool{}
	}
	s.public[pattern] = true
	s.handle(pattern, h, params...)
}

// logFields names the caller in a log line: the socket peer's uid and pid,
// or the TLS client's certificate.
func (p peer) logFields(e *zerolog.Event) {
	if p.tls {
		e.Str("transport", TransportTLS).Str("cert_subject", p.subject).Str("cert_serial", p.serial)
		return
	}
	e.Uint32("uid", p.uid).Int32("pid", p.pid)
}
