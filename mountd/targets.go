package mountd

import (
	"fmt"
	"path"
	"slices"
	"sort"
	"strings"
	"unicode/utf8"

	"github.com/vfolder/vfolder/meta"
)

// WorkDir is the container user's home, where folders go by default.
const WorkDir = "/home/work"

// LinuxbrewName is the automount folder placed at LinuxbrewTarget.
const LinuxbrewName = ".linuxbrew"

// LinuxbrewTarget is where the .linuxbrew automount folder goes.
const LinuxbrewTarget = "/home/linuxbrew/.linuxbrew"

// maxTargetLen bounds a target path (PATH_MAX minus the NUL).
const maxTargetLen = 4095

// refusedExact are system directories that may not be targets themselves
// (what is below them may be).
var refusedExact = map[string]bool{
	"/": true, "/home": true, WorkDir: true, "/root": true, "/run": true,
	"/tmp": true, "/var": true, "/opt": true, "/mnt": true, "/media": true,
	"/srv": true,
}

// refusedTrees are system directories that may not be targets, nor
// anything below them. /opt/kernel, /opt/backend.ai and /home/config hold
// the reference system's in-container runtime files.
var refusedTrees = []string{
	"/bin", "/boot", "/dev", "/etc", "/lib", "/lib32", "/lib64", "/libx32",
	"/proc", "/sbin", "/sys", "/usr",
	"/opt/kernel", "/opt/backend.ai", "/home/config",
}

// under reports whether p equals dir or lies below it (both clean, absolute).
func under(p, dir string) bool {
	if dir == "/" {
		return true
	}
	return p == dir || strings.HasPrefix(p, dir+"/")
}

// ResolveTarget returns the absolute container path a folder called name
// is mounted at when target was requested:
//
//   - "" -> /home/work/<name> (the .linuxbrew automount folder goes to
//     /home/linuxbrew/.linuxbrew instead);
//   - relative -> /home/work/<target>, cleaned; escaping /home/work with
//     ".." is refused;
//   - absolute -> target, cleaned.
//
// The result is refused (ErrSystemPath) when it is a system directory
// ("/", /home, /home/work, /root, /run, /tmp, /var, /opt, /mnt, /media,
// /srv) or lies in or below /bin, /boot, /dev, /etc, /lib, /lib32, /lib64,
// /libx32, /proc, /sbin, /sys, /usr, /opt/kernel, /opt/backend.ai or
// /home/config. Targets must be valid UTF-8 without NUL or control
// characters, at most 4095 bytes, with components of at most 255 bytes.
// name matters only for an empty target and must then be a valid folder
// name (meta.ValidateName).
func ResolveTarget(name, target string) (string, error) {
	var p string
	switch {
	case target == "":
		if err := meta.ValidateName(name); err != nil {
			// err already says "invalid argument".
			return "", fmt.Errorf("%w: %s", ErrInvalid, strings.TrimPrefix(err.Error(), meta.ErrInvalid.Error()+": "))
		}
		if name == LinuxbrewName {
			return LinuxbrewTarget, nil
		}
		p = WorkDir + "/" + name
	case strings.HasPrefix(target, "/"):
		if err := checkTargetText(target); err != nil {
			return "", err
		}
		p = path.Clean(target)
	default:
		if err := checkTargetText(target); err != nil {
			return "", err
		}
		rel := path.Clean(target)
		if rel == ".." || strings.HasPrefix(rel, "../") {
			return "", fmt.Errorf("%w: target %q escapes %s", ErrInvalid, target, WorkDir)
		}
		p = path.Join(WorkDir, rel)
	}
	if err := checkTarget(p); err != nil {
		return "", err
	}
	return p, nil
}

// checkTargetText checks what a requested target may contain.
func checkTargetText(t string) error {
	if len(t) > maxTargetLen {
		return fmt.Errorf("%w: target is %d bytes long; the limit is %d", ErrInvalid, len(t), maxTargetLen)
	}
	if !utf8.ValidString(t) {
		return fmt.Errorf("%w: target is not valid UTF-8", ErrInvalid)
	}
	for _, r := range t {
		if r < 0x20 || r == 0x7f {
			return fmt.Errorf("%w: target %q contains a control character", ErrInvalid, t)
		}
	}
	return nil
}

// checkTarget checks a resolved (absolute, clean) target.
func checkTarget(p string) error {
	if err := checkTargetText(p); err != nil {
		return err
	}
	if !path.IsAbs(p) || path.Clean(p) != p {
		return fmt.Errorf("%w: target %q is not a clean absolute path", ErrInvalid, p)
	}
	for _, c := range strings.Split(p[1:], "/") {
		if len(c) > 255 {
			return fmt.Errorf("%w: target %q has a component longer than 255 bytes", ErrInvalid, p)
		}
		if c == ".." || c == "." {
			return fmt.Errorf("%w: target %q has a %q component", ErrInvalid, p, c)
		}
	}
	switch tree, refused := systemTree(p); {
	case refused && tree == "":
		return fmt.Errorf("%w: %s", ErrSystemPath, p)
	case refused:
		return fmt.Errorf("%w: %s (in %s)", ErrSystemPath, p, tree)
	}
	return nil
}

// IsSystemPath reports whether a clean absolute path is refused as a
// target.
func IsSystemPath(p string) bool {
	_, refused := systemTree(p)
	return refused
}

// systemTree says whether a clean absolute path is refused as a target,
// and the system tree it lies in ("" when the path itself is refused).
func systemTree(p string) (tree string, refused bool) {
	if refusedExact[p] {
		return "", true
	}
	for _, d := range refusedTrees {
		if under(p, d) {
			return d, true
		}
	}
	return "", false
}

// AutomountTarget is where an automount (dot-)folder goes:
// /home/work/<name>, except .linuxbrew at /home/linuxbrew/.linuxbrew.
func AutomountTarget(name string) (string, error) {
	if !meta.IsAutomount(name) {
		return "", fmt.Errorf("%w: %q is not an automount folder (no leading '.')", ErrInvalid, name)
	}
	return ResolveTarget(name, "")
}

// Request is one mount of a mount request, as CheckOverlap sees it.
type Request struct {
	// FolderID identifies the folder (any stable id string).
	FolderID string
	// Subpath is "" for the whole folder, or a relative path inside it.
	Subpath string
	// Target is the resolved container path (from ResolveTarget).
	Target string
}

// CheckOverlap refuses (ErrOverlap) a request where two targets are equal
// or one is a parent of the other, or where two sources (folder id plus
// subpath) are equal or nested. A subpath that is absolute or has a ".."
// component, or a target that is not clean and absolute, is ErrInvalid.
func CheckOverlap(reqs []Request) error {
	type item struct {
		i     int
		comps []string
	}
	srcs := make([]item, 0, len(reqs))
	tgts := make([]item, 0, len(reqs))
	for i, r := range reqs {
		if r.FolderID == "" {
			return fmt.Errorf("%w: mount %d has no folder id", ErrInvalid, i)
		}
		sub, err := cleanSubpath(r.Subpath)
		if err != nil {
			return fmt.Errorf("mount %d: %w", i, err)
		}
		if !path.IsAbs(r.Target) || path.Clean(r.Target) != r.Target {
			return fmt.Errorf("%w: mount %d: target %q is not a clean absolute path", ErrInvalid, i, r.Target)
		}
		src := []string{r.FolderID}
		if sub != "" {
			src = append(src, strings.Split(sub[1:], "/")...)
		}
		var tgt []string
		if r.Target != "/" {
			tgt = strings.Split(r.Target[1:], "/")
		}
		srcs = append(srcs, item{i, src})
		tgts = append(tgts, item{i, tgt})
	}
	check := func(what string, items []item) error {
		// Ordered component by component, everything between a path and
		// one of its descendants is also its descendant: comparing
		// neighbours finds every nesting.
		sort.Slice(items, func(a, b int) bool { return slices.Compare(items[a].comps, items[b].comps) < 0 })
		for k := 1; k < len(items); k++ {
			a, b := items[k-1], items[k]
			if len(a.comps) <= len(b.comps) && slices.Equal(a.comps, b.comps[:len(a.comps)]) {
				lo, hi := min(a.i, b.i), max(a.i, b.i)
				return fmt.Errorf("%w: %s of mount %d and mount %d overlap", ErrOverlap, what, lo, hi)
			}
		}
		return nil
	}
	if err := check("targets", tgts); err != nil {
		return err
	}
	return check("sources", srcs)
}

// cleanSubpath returns a subpath as "" or "/a/b".
func cleanSubpath(sub string) (string, error) {
	if sub == "" || sub == "." {
		return "", nil
	}
	if strings.HasPrefix(sub, "/") {
		return "", fmt.Errorf("%w: subpath %q is absolute", ErrInvalid, sub)
	}
	if strings.ContainsRune(sub, 0) {
		return "", fmt.Errorf("%w: subpath contains NUL", ErrInvalid)
	}
	for _, c := range strings.Split(sub, "/") {
		if c == ".." {
			return "", fmt.Errorf("%w: subpath %q has a '..' component", ErrInvalid, sub)
		}
	}
	c := path.Clean("/" + sub)
	if c == "/" {
		return "", nil
	}
	return c, nil
}
