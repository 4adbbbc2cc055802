package service

import (
	"errors"
	"fmt"
	"path/filepath"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"

	"github.com/vfolder/vfolder/mountd"
)

// hostMounts is Mounts over a mountd.Publisher.
type hostMounts struct {
	p   *mountd.Publisher
	log zerolog.Logger
}

// NewMounts returns the Mounts of the sessions directory root (package
// mountd; root is made a private mount). Needs root.
func NewMounts(root string, log zerolog.Logger) (Mounts, error) {
	p, err := mountd.NewPublisher(root, log)
	if err != nil {
		return nil, err
	}
	return &hostMounts{p: p, log: log}, nil
}

func (h *hostMounts) Reserve(sid, key string) (string, error) { return h.p.Reserve(sid, key) }
func (h *hostMounts) Unpublish(sid string) error              { return h.p.Unpublish(sid) }
func (h *hostMounts) Withdraw(sid, key string) error          { return h.p.Withdraw(sid, key) }
func (h *hostMounts) HostPath(sid, key string) string         { return h.p.HostPath(sid, key) }
func (h *hostMounts) Sessions() ([]string, error)             { return h.p.Sessions() }
func (h *hostMounts) Close() error                            { return h.p.Close() }

func (h *hostMounts) Attach(pid int, hostPath, target string, ro bool) error {
	return mountd.Attach(pid, hostPath, target, ro)
}

// Publish is mountd's Publish; when the key holds a view of a FUSE
// connection that is gone (the daemon that served it was restarted), the
// new view replaces the dead one (mountd.Publisher.Replace): it reaches
// every copy of the dead one in running containers, and the dead mounts
// below it are taken away (see sessions.go).
func (h *hostMounts) Publish(sid, key, source string, ro bool) (string, error) {
	hp, err := h.p.Publish(sid, key, source, ro)
	if err == nil {
		return hp, nil
	}
	hostPath := h.p.HostPath(sid, key)
	if !deadMount(hostPath) {
		return "", err
	}
	if _, err := h.p.Replace(sid, key, source, ro); err != nil {
		return "", fmt.Errorf("replace the dead view at %s: %w", hostPath, err)
	}
	h.log.Info().Str("sid", sid).Str("key", key).Msg("replaced the view of an earlier FUSE connection")
	return hostPath, nil
}

// Placeholders lists the keys whose topmost mount is mountd's placeholder.
func (h *hostMounts) Placeholders(sid string) ([]string, error) {
	mi, err := mountd.ReadMountInfo(0)
	if err != nil {
		return nil, err
	}
	dir := h.p.SessionDir(sid)
	top := map[string]mountd.MountInfo{}
	for _, m := range mi {
		if filepath.Dir(m.Point) == dir {
			top[filepath.Base(m.Point)] = m // later lines are mounted on top
		}
	}
	var out []string
	for k, m := range top {
		if m.FSType == "tmpfs" && m.Source == mountd.PlaceholderSource {
			out = append(out, k)
		}
	}
	return out, nil
}

// deadMount reports whether the file system at p answers ENOTCONN (a FUSE
// connection that was aborted or whose daemon died). The attributes are
// fetched, not taken from the kernel's cache.
func deadMount(p string) bool {
	var st unix.Statx_t
	err := unix.Statx(unix.AT_FDCWD, p, unix.AT_STATX_FORCE_SYNC|unix.AT_SYMLINK_NOFOLLOW, unix.STATX_INO, &st)
	return errors.Is(err, unix.ENOTCONN) || errors.Is(err, unix.ECONNABORTED)
}
