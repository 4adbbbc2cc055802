package files

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vfolder/vfolder/api"
	vfs "github.com/vfolder/vfolder/fs"
	"github.com/vfolder/vfolder/internal/service"
	"github.com/vfolder/vfolder/meta"
)

// caller is who makes a request: an admin peer of the unix socket (root or
// the admin group, identified by the server) or the user of a token.
type caller struct {
	admin  bool
	claims *Claims
}

func (c caller) user() string {
	if c.claims != nil {
		return c.claims.Subject
	}
	return ""
}

type adminKey struct{}

// WithAdmin marks a request's context as coming from a peer the server
// lets use the whole API (root or the admin group). The server sets it on
// every request it routes here; without it a request needs a token.
func WithAdmin(ctx context.Context, admin bool) context.Context {
	return context.WithValue(ctx, adminKey{}, admin)
}

// callerOf authenticates a request: a bearer token when one is given (an
// admin may act as a user that way), else the peer's admin standing.
func (a *API) callerOf(r *http.Request) (caller, error) {
	if h := r.Header.Get("Authorization"); h != "" {
		tok, ok := bearer(h)
		if !ok {
			return caller{}, fmt.Errorf("%w: the Authorization header must be \"Bearer <token>\"", ErrUnauthorized)
		}
		c, err := ParseToken(a.key, tok, time.Now())
		if err != nil {
			return caller{}, err
		}
		return caller{claims: &c}, nil
	}
	if admin, _ := r.Context().Value(adminKey{}).(bool); admin {
		return caller{admin: true}, nil
	}
	return caller{}, fmt.Errorf("%w: a bearer token is needed (vfolder token issue); only root and the admin group may call without one", ErrUnauthorized)
}

// access is what a caller may do in one folder, and where: the folder's
// view in the FUSE namespace (users/<uuid>/<name> of the token's user, or
// the owner's users/ or projects/ view for an admin), the effective
// permission (never above the view's), and whether rw may delete there.
type access struct {
	folder      meta.Folder
	root        string
	perm        meta.Permission
	viewMode    meta.Permission
	rwCanDelete bool
	user        string
}

// resolve finds the folder ref (with owner for a name, admins only) for c
// and checks its reach now: a token's user must reach the folder through
// service.Reach at the time of the request, and gets the lower of the
// token's and the reach's permission; a token for one folder opens no
// other.
func (a *API) resolve(ctx context.Context, c caller, ref string, owner meta.ScopeID) (*access, error) {
	if ref == "" {
		return nil, fmt.Errorf("%w: folder reference is empty", meta.ErrInvalid)
	}
	var ac access
	if c.admin {
		f, err := a.svc.Folder(ctx, ref, owner)
		if err != nil {
			return nil, err
		}
		ns := vfs.NSUsers
		if f.Owner.Kind == meta.KindProject {
			ns = vfs.NSProjects
		}
		ac = access{folder: f.Folder, perm: f.Permission}
		if err := a.viewOf(ctx, &ac, ns, f.Owner.UUID, func(v api.View) bool { return v.FolderID == f.ID }); err != nil {
			return nil, err
		}
	} else {
		user := c.claims.Subject
		reached, err := a.svc.Reach(ctx, user)
		if err != nil {
			return nil, err
		}
		id, idErr := meta.ParseUUID(ref)
		var hit *service.Reached
		for i := range reached {
			e := &reached[i]
			switch {
			case idErr == nil && e.Folder.ID == id:
			case idErr != nil && owner.IsZero() && e.Name == ref:
			case idErr != nil && !owner.IsZero() && e.Folder.Owner == owner && e.Folder.Name == ref:
			default:
				continue
			}
			hit = e
			break
		}
		if hit == nil {
			return nil, fmt.Errorf("%w: user %s reaches no folder %q", meta.ErrNotFound, user, ref)
		}
		if c.claims.Folder != "" && c.claims.Folder != hit.Folder.ID {
			return nil, fmt.Errorf("%w: the token is for folder %s only", service.ErrForbidden, c.claims.Folder)
		}
		ac = access{folder: hit.Folder, perm: c.claims.Perm.Min(hit.Perm), user: user}
		name := hit.Name
		if err := a.viewOf(ctx, &ac, vfs.NSUsers, user, func(v api.View) bool { return v.Name == name && v.FolderID == hit.Folder.ID }); err != nil {
			return nil, err
		}
	}
	ac.perm = ac.perm.Min(ac.viewMode)
	vols, err := a.svc.Volumes(ctx)
	if err != nil {
		return nil, err
	}
	for _, v := range vols {
		if v.Name == ac.folder.Volume {
			ac.rwCanDelete = v.RWCanDelete
		}
	}
	return &ac, nil
}

// viewOf fills in the view of ac's folder among ns/key's views.
func (a *API) viewOf(ctx context.Context, ac *access, ns, key string, match func(api.View) bool) error {
	if !ac.folder.Status.Live() {
		return fmt.Errorf("%w: folder %q is %s", meta.ErrConflict, ac.folder.Name, ac.folder.Status)
	}
	views, err := a.svc.ListViews(ctx, ns, key)
	if err != nil {
		return err
	}
	for _, v := range views {
		if match(v) {
			ac.root, ac.viewMode = v.Path, v.Mode
			return nil
		}
	}
	return fmt.Errorf("%w: folder %q has no view on this node (its volume is unavailable, or FUSE is off)", service.ErrUnavailable, ac.folder.Name)
}

// canWrite refuses any change below rw.
func (ac *access) canWrite() error {
	if ac.perm.Rank() < meta.PermRW.Rank() {
		return fmt.Errorf("%w: folder %q is read-only (%s) for this caller: nothing in it may change", service.ErrForbidden, ac.folder.Name, ac.perm)
	}
	return nil
}

// canDelete refuses removals unless the permission is wd, or rw on a
// volume that lets rw delete.
func (ac *access) canDelete() error {
	if err := ac.canWrite(); err != nil {
		return err
	}
	if ac.perm == meta.PermWD || ac.rwCanDelete {
		return nil
	}
	return fmt.Errorf("%w: deleting in folder %q needs permission wd (this caller has %s, and volume %q does not let rw delete)",
		service.ErrForbidden, ac.folder.Name, ac.perm, ac.folder.Volume)
}

// fuseMagic is FUSE's statfs f_type.
const fuseMagic = 0x65735546

// openRoot opens the view's root directory: no symlink on the way, and it
// must be a FUSE mount (the daemon's own namespace), so every call below
// passes the view's rules.
func (ac *access) openRoot() (int, error) {
	fd, err := unix.Openat2(unix.AT_FDCWD, ac.root, &unix.OpenHow{
		Flags:   unix.O_RDONLY | unix.O_DIRECTORY | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS,
	})
	if err != nil {
		return -1, fmt.Errorf("%w: opening the view of folder %q: %v", service.ErrUnavailable, ac.folder.Name, err)
	}
	var st unix.Statfs_t
	if err := unix.Fstatfs(fd, &st); err != nil || st.Type != fuseMagic {
		unix.Close(fd)
		return -1, fmt.Errorf("%w: the view of folder %q at %s is not the daemon's FUSE namespace", service.ErrUnavailable, ac.folder.Name, ac.root)
	}
	return fd, nil
}

// checkVolume asks for a volume permission (upload or download) of the
// caller's scopes: the user (token) or the folder's owner (admin), and
// the project for a project's folder.
func (a *API) checkVolume(ctx context.Context, ac *access, p service.VolumePerm) error {
	var who []meta.ScopeID
	if ac.user != "" {
		who = append(who, meta.ScopeID{Kind: meta.KindUser, UUID: ac.user})
	}
	if ac.folder.Owner.Kind == meta.KindProject || ac.user == "" {
		who = append(who, ac.folder.Owner)
	}
	return a.svc.CheckVolumePerm(ctx, ac.folder.Volume, p, who...)
}

// QuotaError is a write the folder's quota scope has no room for.
type QuotaError struct {
	Scope  meta.ScopeID
	Volume string
	Limit  int64
	Used   int64
	Need   int64 // bytes the request needs; 0 when a stream crossed the limit
}

func (e *QuotaError) Error() string {
	free := max(e.Limit-e.Used, 0)
	if e.Need > 0 {
		return fmt.Sprintf("quota exceeded: %d bytes do not fit in quota scope %s on volume %q (limit %d bytes, %d used, %d free)",
			e.Need, e.Scope, e.Volume, e.Limit, e.Used, free)
	}
	return fmt.Sprintf("quota exceeded: quota scope %s on volume %q is full (limit %d bytes, %d used, %d free); the partial data was removed",
		e.Scope, e.Volume, e.Limit, e.Used, free)
}

// quotaError builds a QuotaError with the ledger's figures now.
func (a *API) quotaError(ctx context.Context, f meta.Folder, need int64) *QuotaError {
	e := &QuotaError{Scope: f.Owner, Volume: f.Volume, Need: need}
	if sc, err := a.svc.QuotaScope(ctx, f.Volume, f.Owner); err == nil {
		e.Limit, e.Used = sc.LimitBytes, sc.UsedBytes
	}
	return e
}

// checkRoom refuses need bytes when the folder's scope has a limit and
// less than need free (the ledger's figures; writes are still cut at the
// limit by the view, this only refuses early).
func (a *API) checkRoom(ctx context.Context, f meta.Folder, need int64) error {
	sc, err := a.svc.QuotaScope(ctx, f.Volume, f.Owner)
	if errors.Is(err, meta.ErrNotFound) {
		return nil // no scope, no limit
	}
	if err != nil {
		return err
	}
	if sc.LimitBytes > 0 && need > sc.LimitBytes-sc.UsedBytes {
		return &QuotaError{Scope: f.Owner, Volume: f.Volume, Limit: sc.LimitBytes, Used: sc.UsedBytes, Need: need}
	}
	return nil
}
