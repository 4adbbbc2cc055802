package main

import (
	"fmt"
	"net"

	"github.com/rs/zerolog"
	"golang.org/x/crypto/ssh"

	"github.com/vfolder/vfolder/internal/config"
	"github.com/vfolder/vfolder/internal/service"
	"github.com/vfolder/vfolder/internal/sftpd"
)

// startSFTP starts the SFTP endpoint when it is configured ([sftp]
// listen, --sftp-listen): the host key is loaded (made when absent), the
// address bound, and connections served in the background. The FUSE
// namespace must be mounted already. stop closes the listener and every
// session and waits for them; it is a no-op when the endpoint is off.
func startSFTP(cfg *config.Config, svc *service.Service, log zerolog.Logger) (stop func(), err error) {
	if !cfg.SFTP.Enabled() {
		return func() {}, nil
	}
	keyPath := cfg.HostKeyPath()
	key, created, err := sftpd.LoadHostKey(keyPath)
	if err != nil {
		return nil, fmt.Errorf("sftp: %w", err)
	}
	if created {
		log.Info().Str("path", keyPath).Str("fingerprint", ssh.FingerprintSHA256(key.PublicKey())).Msg("sftp host key created")
	}
	srv, err := sftpd.New(svc, sftpd.Options{MountPoint: cfg.MountPoint, HostKey: key, RequestTimeout: cfg.Cluster.Timeout(), Log: log})
	if err != nil {
		return nil, fmt.Errorf("sftp: %w", err)
	}
	l, err := net.Listen("tcp", cfg.SFTP.Listen)
	if err != nil {
		srv.Close()
		return nil, fmt.Errorf("sftp: %w", err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(l); err != nil {
			log.Error().Err(err).Str("listen", l.Addr().String()).Msg("the sftp endpoint stopped accepting connections")
		}
	}()
	log.Info().Str("listen", l.Addr().String()).Str("host_key", keyPath).Str("fingerprint", ssh.FingerprintSHA256(key.PublicKey())).Msg("sftp endpoint ready")
	return func() {
		srv.Close()
		<-done
	}, nil
}
