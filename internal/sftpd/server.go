package sftpd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"time"

	"github.com/pkg/sftp"
	"github.com/rs/zerolog"
	"golang.org/x/crypto/ssh"
	"golang.org/x/sys/unix"

	"github.com/vfolder/vfolder/api"
	"github.com/vfolder/vfolder/internal/service"
	"github.com/vfolder/vfolder/meta"
)

// Service is what the endpoint needs of the daemon's service
// (*service.Service implements it).
type Service interface {
	// CheckSSHLogin tells whether pub is registered for user.
	CheckSSHLogin(ctx context.Context, user string, pub ssh.PublicKey) (string, meta.SSHKey, error)
	// Reach lists the folders user reaches, with their names in
	// users/<uuid>/ and the effective permission.
	Reach(ctx context.Context, user string) ([]service.Reached, error)
	// CheckVolumePerm checks a volume permission of the scopes in who.
	CheckVolumePerm(ctx context.Context, vol string, p service.VolumePerm, who ...meta.ScopeID) error
	// QuotaScope returns a scope's limit and usage (for the messages of
	// EDQUOT).
	QuotaScope(ctx context.Context, vol string, id meta.ScopeID) (api.QuotaScope, error)
}

// Options configure a Server.
type Options struct {
	// MountPoint is the daemon's FUSE mount point (already mounted).
	MountPoint string
	// HostKey is the server's host key (LoadHostKey).
	HostKey ssh.Signer
	// RequestTimeout bounds each metadata call (login, reach); 0 means
	// 10s.
	RequestTimeout time.Duration
	Log            zerolog.Logger
}

// handshakeTimeout bounds the SSH handshake and authentication.
const handshakeTimeout = 30 * time.Second

// Server is the SFTP endpoint.
type Server struct {
	svc  Service
	opts Options
	log  zerolog.Logger
	cfg  *ssh.ServerConfig
	mnt  *os.File // O_PATH descriptor of the mount point's root

	mu     sync.Mutex
	closed bool
	lns    map[net.Listener]bool
	conns  map[net.Conn]bool
	wg     sync.WaitGroup
}

// New returns a server doing its file I/O through the views under
// opts.MountPoint, which must be mounted already (its root descriptor is
// opened here).
func New(svc Service, opts Options) (*Server, error) {
	if opts.HostKey == nil {
		return nil, errors.New("sftpd: no host key")
	}
	if opts.RequestTimeout <= 0 {
		opts.RequestTimeout = 10 * time.Second
	}
	fd, err := unix.Open(opts.MountPoint, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("sftpd: mount point %s: %w", opts.MountPoint, err)
	}
	s := &Server{
		svc: svc, opts: opts, log: opts.Log.With().Str("component", "sftp").Logger(),
		mnt: os.NewFile(uintptr(fd), opts.MountPoint), lns: map[net.Listener]bool{}, conns: map[net.Conn]bool{},
	}
	s.cfg = &ssh.ServerConfig{
		PublicKeyCallback: s.checkKey,
		MaxAuthTries:      6,
		ServerVersion:     "SSH-2.0-vfolderd",
		AuthLogCallback: func(c ssh.ConnMetadata, method string, err error) {
			if err != nil && method != "none" {
				s.log.Debug().Str("user", c.User()).Str("remote", c.RemoteAddr().String()).Str("method", method).Err(err).Msg("login refused")
			}
		},
	}
	s.cfg.AddHostKey(opts.HostKey)
	return s, nil
}

// Permissions extensions set at login.
const (
	extUser = "vfolder-user" // canonical user id
	extKey  = "vfolder-key"  // the key, authorized_keys form
	extFP   = "vfolder-fp"   // its fingerprint
)

func (s *Server) checkKey(c ssh.ConnMetadata, pub ssh.PublicKey) (*ssh.Permissions, error) {
	ctx, cancel := context.WithTimeout(context.Background(), s.opts.RequestTimeout)
	defer cancel()
	u, k, err := s.svc.CheckSSHLogin(ctx, c.User(), pub)
	if err != nil {
		if !errors.Is(err, service.ErrKeyRefused) {
			s.log.Error().Err(err).Str("user", c.User()).Msg("cannot check an ssh key")
		}
		return nil, err
	}
	return &ssh.Permissions{Extensions: map[string]string{extUser: u, extKey: k.Key, extFP: k.Fingerprint}}, nil
}

// Serve accepts connections on l until Close; it returns nil after Close.
func (s *Server) Serve(l net.Listener) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		l.Close()
		return nil
	}
	s.lns[l] = true
	s.wg.Add(1)
	s.mu.Unlock()
	defer s.wg.Done()
	var delay time.Duration
	for {
		c, err := l.Accept()
		if err != nil {
			s.mu.Lock()
			closed := s.closed
			s.mu.Unlock()
			if closed {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, unix.EMFILE) || errors.Is(err, unix.ENFILE) {
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				s.log.Warn().Err(err).Dur("retry", delay).Msg("accepting an sftp connection")
				time.Sleep(delay)
				continue
			}
			return err
		}
		delay = 0
		if !s.track(c) {
			c.Close()
			return nil
		}
		go s.serveConn(c)
	}
}

// track registers c; false once the server is closed.
func (s *Server) track(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.conns[c] = true
	s.wg.Add(1)
	return true
}

func (s *Server) untrack(c net.Conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	s.wg.Done()
}

// Close stops accepting, closes every connection (ending its sessions)
// and waits until every goroutine of the server has returned.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		s.wg.Wait()
		return nil
	}
	s.closed = true
	for l := range s.lns {
		l.Close()
	}
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	return s.mnt.Close()
}

func (s *Server) serveConn(c net.Conn) {
	defer s.untrack(c)
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(handshakeTimeout))
	sc, chans, reqs, err := ssh.NewServerConn(c, s.cfg)
	if err != nil {
		s.log.Debug().Err(err).Str("remote", c.RemoteAddr().String()).Msg("ssh handshake failed")
		return
	}
	_ = c.SetDeadline(time.Time{})
	defer sc.Close()
	user, fp := sc.Permissions.Extensions[extUser], sc.Permissions.Extensions[extFP]
	log := s.log.With().Str("user", user).Str("key", fp).Str("remote", c.RemoteAddr().String()).Logger()
	log.Info().Msg("sftp login")
	defer log.Info().Msg("sftp logout")
	go ssh.DiscardRequests(reqs)
	var wg sync.WaitGroup
	defer wg.Wait()
	for nc := range chans {
		if nc.ChannelType() != "session" {
			_ = nc.Reject(ssh.UnknownChannelType, "only sessions with the sftp subsystem are served")
			continue
		}
		ch, creqs, err := nc.Accept()
		if err != nil {
			log.Debug().Err(err).Msg("accepting a channel")
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.serveChannel(sc, ch, creqs, log)
		}()
	}
}

// serveChannel answers a session channel's requests: the sftp subsystem
// is served, everything else refused.
func (s *Server) serveChannel(sc *ssh.ServerConn, ch ssh.Channel, reqs <-chan *ssh.Request, log zerolog.Logger) {
	defer ch.Close()
	for req := range reqs {
		if req.Type != "subsystem" || string(req.Payload) != "\x00\x00\x00\x04sftp" {
			if req.WantReply {
				_ = req.Reply(false, nil)
			}
			if req.Type == "exec" || req.Type == "shell" {
				fmt.Fprintln(ch.Stderr(), "vfolderd serves SFTP only (no shell, no commands); use sftp or scp -s")
			}
			continue
		}
		h, err := s.session(sc, log)
		if err != nil {
			log.Info().Err(err).Msg("sftp session refused")
			_ = req.Reply(false, nil)
			return
		}
		_ = req.Reply(true, nil)
		go ssh.DiscardRequests(reqs)
		rs := sftp.NewRequestServer(ch, h.sftpHandlers(), sftp.WithStartDirectory("/"))
		err = rs.Serve()
		status := uint32(0)
		if err != nil && !errors.Is(err, io.EOF) {
			status = 1
			log.Debug().Err(err).Msg("sftp session ended")
		}
		// The exit status before the close: clients (scp) want one.
		_, _ = ch.SendRequest("exit-status", false, ssh.Marshal(struct{ Status uint32 }{status}))
		_ = rs.Close()
		return
	}
}

// session checks the login's key again and returns the session's
// handlers.
func (s *Server) session(sc *ssh.ServerConn, log zerolog.Logger) (*handlers, error) {
	ext := sc.Permissions.Extensions
	pub, _, _, _, err := ssh.ParseAuthorizedKey([]byte(ext[extKey]))
	if err != nil {
		return nil, err
	}
	h := &handlers{s: s, user: ext[extUser], pub: pub, log: log}
	if err := h.checkKey(context.Background()); err != nil {
		return nil, err
	}
	return h, nil
}
