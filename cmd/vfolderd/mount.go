package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"

	"github.com/vfolder/vfolder/fs"
	"github.com/vfolder/vfolder/internal/config"
	"github.com/vfolder/vfolder/mountd"
	"github.com/vfolder/vfolder/quota"
)

// fuseFsName is the source name of the daemon's FUSE mount in
// /proc/self/mountinfo (set by package fs).
const fuseFsName = "vfolder"

// maxStaleMounts bounds how many stacked stale mounts are detached.
const maxStaleMounts = 16

// mountViews mounts the FUSE namespace at cfg.MountPoint, replacing a stale
// mount a crashed vfolderd left there.
// Every rw and wd view reports to ledger, which the caller closes after
// the file system.
func mountViews(cfg *config.Config, ledger *quota.Manager, log zerolog.Logger) (*fs.FS, error) {
	mnt := cfg.MountPoint
	const disable = "set fuse = false (or --no-fuse) to serve the API without views"
	if euid := os.Geteuid(); euid != 0 {
		return nil, fmt.Errorf("mounting the FUSE namespace at %s needs root, but vfolderd runs as uid %d; run it as root, or %s", mnt, euid, disable)
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		return nil, fmt.Errorf("mounting the FUSE namespace at %s needs /dev/fuse (%v); load the fuse kernel module, or %s", mnt, err, disable)
	}
	if err := prepareMountPoint(mnt, log); err != nil {
		return nil, err
	}
	f, err := fs.Mount(fs.Options{
		MountPoint: mnt,
		StorageUID: uint32(cfg.StorageUID),
		StorageGID: uint32(cfg.StorageGID),
		Logger:     log,
		Debug:      cfg.Level() <= zerolog.TraceLevel,
		Quota:      ledger,
		Tuning:     fs.Tuning{IoUring: cfg.FUSEIoUring, KernelPermissions: cfg.KernelPermissions},
	})
	if err != nil {
		return nil, fmt.Errorf("mounting the FUSE namespace at %s: %w (or %s)", mnt, err, disable)
	}
	return f, nil
}

// prepareMountPoint makes sure mnt is a directory with no stale vfolder
// mount on it: a FUSE mount whose daemon is gone (stat answers ENOTCONN)
// or any FUSE mount named "vfolder" at that path is detached (MNT_DETACH).
// The state directory lock is held, so no other vfolderd of this state
// directory can own such a mount.
func prepareMountPoint(mnt string, log zerolog.Logger) error {
	if !filepath.IsAbs(mnt) {
		return fmt.Errorf("mount point %q is not an absolute path", mnt)
	}
	mnt = filepath.Clean(mnt)
	for i := 0; ; i++ {
		why := staleMount(mnt)
		if why == "" {
			break
		}
		if i == maxStaleMounts {
			return fmt.Errorf("mount point %s: still busy after detaching %d stale mounts (%s)", mnt, i, why)
		}
		log.Warn().Str("mount_point", mnt).Str("reason", why).Msg("detaching a stale FUSE mount left by an earlier vfolderd")
		if err := unix.Unmount(mnt, unix.MNT_DETACH); err != nil {
			return fmt.Errorf("mount point %s: cannot detach the stale mount (%s): %w", mnt, why, err)
		}
	}
	if err := os.MkdirAll(filepath.Dir(mnt), 0o755); err != nil {
		return fmt.Errorf("mount point: %w", err)
	}
	if err := os.Mkdir(mnt, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("mount point: %w", err)
	}
	st, err := os.Stat(mnt)
	if err != nil {
		return fmt.Errorf("mount point: %w", err)
	}
	if !st.IsDir() {
		return fmt.Errorf("mount point %s is not a directory", mnt)
	}
	return nil
}

// staleMount says why the mount on mnt is stale, or "" when there is none.
func staleMount(mnt string) string {
	var st unix.Stat_t
	if err := unix.Stat(mnt, &st); errors.Is(err, unix.ENOTCONN) {
		return "its FUSE connection is gone (ENOTCONN)"
	}
	at := resolveParent(mnt)
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return ""
	}
	defer f.Close()
	for _, m := range parseMountInfo(f) {
		if m.Point == at && isVfolderFUSE(m) {
			return fmt.Sprintf("a %s mount named %q is still there", m.FSType, m.Source)
		}
	}
	return ""
}

func isVfolderFUSE(m mountd.MountInfo) bool {
	return (m.FSType == "fuse" || strings.HasPrefix(m.FSType, "fuse.")) && m.Source == fuseFsName
}

// resolveParent resolves symlinks in the parent of p (never p itself,
// which may be a dead mount), as mountinfo shows mount points.
func resolveParent(p string) string {
	dir, err := filepath.EvalSymlinks(filepath.Dir(p))
	if err != nil {
		return p
	}
	return filepath.Join(dir, filepath.Base(p))
}

// parseMountInfo reads /proc/<pid>/mountinfo text (mountd.ParseMountInfoLine
// parses each line); lines that do not parse are skipped.
func parseMountInfo(r io.Reader) []mountd.MountInfo {
	var out []mountd.MountInfo
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if m, err := mountd.ParseMountInfoLine(sc.Text()); err == nil {
			out = append(out, m)
		}
	}
	return out
}
