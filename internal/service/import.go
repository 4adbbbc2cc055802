package service

// Volume import: register every folder already on a layout-v3 volume.
//
// ImportVolume reads the volume's layout (volume.ScanLayout: the scope,
// aa and bb levels and the folder directories, never a folder's content)
// and plans one record per folder directory: its id is the one its path
// spells, its owner the scope directory's UUID. The kind of that owner
// (user or project) is not on the volume, so it comes, in this order,
// from the names file's third column, from what the store already knows
// of that UUID (a quota scope on the volume, folders on any volume, or
// project memberships), or from the request's owner kind; a folder whose owner kind none of these gives is
// refused. Its name is the names file's, else its id.
//
// Nothing is registered unless the whole plan is understood: a stray
// entry (a file, a symlink, a name that is not lowercase hex of the
// level's length, a mount point), an id already registered for another
// owner or volume, a name the owner already uses (or two folders given
// one name), a kind the store contradicts, or a names-file line for a
// folder that is not on the volume is a problem, and the call fails with
// ErrInvalid listing every problem. Storage is never written: import only
// reads the layout, and the quota check it runs reads the folders (its
// repairs change the daemon's ledger, not the volume).
//
// Then each planned folder gets its quota scope (created when missing,
// with the owner policy's max_quota_scope_size or the daemon's default
// limit, whatever AutoCreateScopes says: the folders exist already) and
// its record, straight in status ready; the owner's policy count limit
// does not apply (the folders exist already). Volume permissions do not
// apply either: import is an administrator's act on the volume itself.
// Finally every scope that holds a found folder is checked with repair
// (CheckQuota): one walk counts the folders' usage into the ledger, so
// the usage is exact and the next check finds no difference. A folder
// that was registered before is skipped, so a second run registers
// nothing and its checks find nothing to repair; a run interrupted after
// some records were written is finished by running it again (the checks
// cover the skipped folders' scopes too).
//
// Imports run one at a time (importMu); creates of other folders may go
// on meanwhile (a new folder gets a fresh id; create --id refuses an id
// whose directory exists).

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"

	"github.com/vfolder/vfolder/api"
	"github.com/vfolder/vfolder/meta"
)

// importMu serialises imports.
var importMu sync.Mutex

// importProgress holds the progress of the running or last import per
// service and volume (ImportProgress); progMu guards the records.
var (
	progMu         sync.Mutex
	importProgress = map[progKey]*api.ImportProgress{}
)

type progKey struct {
	s   *Service
	vol string
}

// setProgress changes the progress record of an import under progMu.
func (s *Service) setProgress(vol string, fn func(p *api.ImportProgress)) {
	progMu.Lock()
	defer progMu.Unlock()
	p := importProgress[progKey{s, vol}]
	if p == nil {
		p = &api.ImportProgress{Volume: vol}
		importProgress[progKey{s, vol}] = p
	}
	fn(p)
}

// ImportProgress reports the running or the last import of a volume
// since the daemon started; ErrNotFound when there was none.
func (s *Service) ImportProgress(vol string) (api.ImportProgress, error) {
	progMu.Lock()
	p := importProgress[progKey{s, vol}]
	var out api.ImportProgress
	if p != nil {
		out = *p
	}
	progMu.Unlock()
	if p == nil {
		return out, fmt.Errorf("%w: no import of volume %q ran since the daemon started", meta.ErrNotFound, vol)
	}
	if out.Running && out.Phase == api.ImportCounting && !out.Scope.IsZero() {
		out.ScopeBytes, _ = s.scopeUsage(context.Background(), vol, out.Scope)
	}
	return out, nil
}

// maxListedProblems bounds the problems an error message lists.
const maxListedProblems = 50

// importPlan is one folder an import registers.
type importPlan struct {
	folder meta.Folder
	rel    string
}

// ImportVolume registers the folders already on an attached volume (see
// the file comment).
func (s *Service) ImportVolume(ctx context.Context, vol string, req api.ImportRequest) (api.ImportReport, error) {
	rep := api.ImportReport{Volume: vol, DryRun: req.DryRun, Imported: []api.ImportedFolder{}, Skipped: []api.ImportedFolder{},
		Problems: []api.ImportProblem{}, Checks: []api.QuotaCheck{}}
	switch req.OwnerKind {
	case "", api.OwnerKindUser, api.OwnerKindProject:
	default:
		return rep, fmt.Errorf("%w: owner_kind %q is none of user, project", meta.ErrInvalid, req.OwnerKind)
	}
	names := map[string]api.ImportName{}
	for i, n := range req.Names {
		id, err := meta.ParseFolderID(n.FolderID)
		if err != nil {
			return rep, fmt.Errorf("names entry %d: folder id %q: %w", i+1, n.FolderID, err)
		}
		if err := meta.ValidateName(n.Name); err != nil {
			return rep, fmt.Errorf("names entry %d (folder %s): %w", i+1, id, err)
		}
		switch n.OwnerKind {
		case "", api.OwnerKindUser, api.OwnerKindProject:
		default:
			return rep, fmt.Errorf("%w: names entry %d (folder %s): owner kind %q is none of user, project", meta.ErrInvalid, i+1, id, n.OwnerKind)
		}
		if _, dup := names[id]; dup {
			return rep, fmt.Errorf("%w: names entry %d: folder %s is named twice", meta.ErrInvalid, i+1, id)
		}
		n.FolderID = id
		names[id] = n
	}
	a, err := s.attachedVolume(vol)
	if err != nil {
		return rep, err
	}
	importMu.Lock()
	defer importMu.Unlock()
	s.setProgress(vol, func(p *api.ImportProgress) {
		*p = api.ImportProgress{Volume: vol, Running: true, Phase: api.ImportReading}
	})
	rep, err = s.importVolume(ctx, a, vol, req, names, rep)
	s.setProgress(vol, func(p *api.ImportProgress) {
		p.Running, p.Phase, p.Scope = false, api.ImportDone, meta.ScopeID{}
		if err != nil {
			p.Phase, p.Error = api.ImportFailed, err.Error()
		}
	})
	return rep, err
}

// importVolume is ImportVolume once the request is checked and importMu
// held.
func (s *Service) importVolume(ctx context.Context, a *attached, vol string, req api.ImportRequest, names map[string]api.ImportName, rep api.ImportReport) (api.ImportReport, error) {

	start := s.log.Info().Str("volume", vol).Str("path", a.vol.Path())
	start.Msg("import: reading the volume's layout")
	layout, err := a.vol.ScanLayout(ctx)
	if err != nil {
		return rep, fmt.Errorf("import volume %q: %w", vol, err)
	}
	problem := func(rel, format string, args ...any) {
		rep.Problems = append(rep.Problems, api.ImportProblem{Path: rel, Reason: fmt.Sprintf(format, args...)})
	}
	for _, st := range layout.Strays {
		problem(st.Rel, "%s", st.Reason)
	}

	// What the store knows of each owner UUID on this volume.
	known, err := s.knownKinds(ctx, vol)
	if err != nil {
		return rep, err
	}
	var plans []importPlan
	scopes := map[meta.ScopeID]bool{} // every scope holding a found folder
	taken := map[meta.ScopeID]map[string]string{}
	kindOf := map[string]meta.OwnerKind{} // scope hex -> kind this import gives it
	seen := map[string]bool{}
	for _, fd := range layout.Folders {
		id, err := fd.FolderID()
		if err != nil {
			problem(fd.Rel, "%v", err)
			continue
		}
		seen[id] = true
		n, named := names[id]
		if cur, err := s.store.GetFolder(ctx, id); err == nil {
			if cur.Volume == vol && cur.Owner.UUID == fd.ScopeHex {
				rep.Skipped = append(rep.Skipped, api.ImportedFolder{ID: id, Name: cur.Name, Owner: cur.Owner, Path: a.vol.FolderPath(cur.Owner, id)})
				scopes[cur.Owner] = true
				continue
			}
			problem(fd.Rel, "folder id %s is registered already, as folder %q of %s on volume %q", id, cur.Name, cur.Owner, cur.Volume)
			continue
		} else if !errors.Is(err, meta.ErrNotFound) {
			return rep, err
		}
		kind := meta.OwnerKind(n.OwnerKind)
		kk, err := s.kindsOf(ctx, known, fd.ScopeHex)
		if err != nil {
			return rep, err
		}
		switch {
		case kind == "" && len(kk) == 1:
			kind = kk[0]
		case kind == "" && len(kk) == 0:
			kind = meta.OwnerKind(req.OwnerKind)
		case kind == "":
			problem(fd.Rel, "the store knows %s both as a user and as a project; give the folder's owner kind in the names file", fd.ScopeHex)
			continue
		case len(kk) > 0 && !containsKind(kk, kind):
			problem(fd.Rel, "the names file says the owner is a %s, but the store knows %s as a %s", kind, fd.ScopeHex, kk[0])
			continue
		}
		if kind == "" {
			problem(fd.Rel, "the owner kind of scope %s is unknown: give it in the names file (third column) or with --owner-kind user|project", fd.ScopeHex)
			continue
		}
		if prev, ok := kindOf[fd.ScopeHex]; ok && prev != kind {
			problem(fd.Rel, "the names file gives scope %s both kinds (user and project)", fd.ScopeHex)
			continue
		}
		kindOf[fd.ScopeHex] = kind
		owner := meta.ScopeID{Kind: kind, UUID: fd.ScopeHex}
		name := id
		if named {
			name = n.Name
		}
		if err := checkDotName(owner, name); err != nil {
			problem(fd.Rel, "%v", err)
			continue
		}
		if taken[owner] == nil {
			taken[owner] = map[string]string{}
		}
		if other, dup := taken[owner][name]; dup {
			problem(fd.Rel, "folders %s and %s would both be named %q for %s", other, id, name, owner)
			continue
		}
		taken[owner][name] = id
		if cur, err := s.store.FolderByName(ctx, owner, name); err == nil {
			problem(fd.Rel, "%s already has a folder named %q (id %s)", owner, name, cur.ID)
			continue
		} else if !errors.Is(err, meta.ErrNotFound) {
			return rep, err
		}
		scopes[owner] = true
		plans = append(plans, importPlan{rel: fd.Rel, folder: meta.Folder{
			ID: id, Name: name, Owner: owner, Volume: vol, UsageMode: meta.ModeGeneral,
			Permission: meta.PermRW, Status: meta.StatusReady,
		}})
	}
	var unseen []string
	for id := range names {
		if !seen[id] {
			unseen = append(unseen, id)
		}
	}
	sort.Strings(unseen)
	for _, id := range unseen {
		problem("", "the names file names folder %s, which is not on volume %q", id, vol)
	}
	if len(rep.Problems) > 0 {
		return rep, fmt.Errorf("%w: volume %q holds %d entr%s import does not understand; nothing was registered:\n%s",
			meta.ErrInvalid, vol, len(rep.Problems), plural(len(rep.Problems), "y", "ies"), listProblems(rep.Problems))
	}
	for _, p := range plans {
		rep.Imported = append(rep.Imported, api.ImportedFolder{ID: p.folder.ID, Name: p.folder.Name, Owner: p.folder.Owner, Path: a.vol.FolderPath(p.folder.Owner, p.folder.ID)})
	}
	if req.DryRun {
		return rep, nil
	}

	// From here on a client going away must not stop halfway.
	ctx = context.WithoutCancel(ctx)
	s.setProgress(vol, func(p *api.ImportProgress) { p.Phase, p.Folders = api.ImportRegister, len(plans) })
	owners := map[meta.ScopeID]bool{}
	for i, p := range plans {
		if err := s.importScope(ctx, vol, p.folder.Owner); err != nil {
			return rep, fmt.Errorf("import volume %q: %d of %d folders registered; quota scope of %s: %w (run the import again to finish)", vol, i, len(plans), p.folder.Owner, err)
		}
		if err := s.store.CreateFolder(ctx, p.folder, 0); err != nil {
			return rep, fmt.Errorf("import volume %q: %d of %d folders registered; folder %s: %w (run the import again to finish)", vol, i, len(plans), p.folder.ID, err)
		}
		owners[p.folder.Owner] = true
		s.setProgress(vol, func(pr *api.ImportProgress) { pr.Registered = i + 1 })
		s.log.Info().Str("volume", vol).Str("folder", p.folder.ID).Str("name", p.folder.Name).Str("owner", p.folder.Owner.String()).
			Int("done", i+1).Int("of", len(plans)).Msg("import: folder registered")
	}
	for o := range owners {
		s.syncOwner(ctx, o)
	}
	// One walk per scope counts the usage into the ledger.
	if s.opts.Quota != nil || s.opts.ClusterQuota != nil {
		ids := make([]meta.ScopeID, 0, len(scopes))
		for id := range scopes {
			ids = append(ids, id)
		}
		sort.Slice(ids, func(i, j int) bool { return ids[i].String() < ids[j].String() })
		s.setProgress(vol, func(p *api.ImportProgress) { p.Phase, p.Scopes = api.ImportCounting, len(ids) })
		for i, id := range ids {
			s.setProgress(vol, func(p *api.ImportProgress) { p.Counted, p.Scope = i, id })
			s.log.Info().Str("volume", vol).Str("scope", id.String()).Int("scope_no", i+1).Int("of", len(ids)).Msg("import: counting usage")
			chk, err := s.CheckQuota(ctx, vol, id, true)
			if err != nil {
				return rep, fmt.Errorf("import volume %q: every folder is registered, but counting the usage of %s failed: %w (run 'vfolder quota-scope check %s %s --repair')", vol, id, err, vol, id)
			}
			rep.Checks = append(rep.Checks, chk)
			s.setProgress(vol, func(p *api.ImportProgress) { p.Counted = i + 1 })
			s.log.Info().Str("volume", vol).Str("scope", id.String()).Int64("used_bytes", chk.UsedBytes).Int64("used_inodes", chk.UsedInodes).
				Bool("drift", chk.Drift).Msg("import: usage counted")
		}
	}
	for _, l := range [][]api.ImportedFolder{rep.Imported, rep.Skipped} {
		for i := range l {
			l[i].UsedBytes, l[i].UsedInodes = s.opts.Usage.FolderUsage(l[i].ID)
		}
	}
	s.log.Info().Str("volume", vol).Int("imported", len(rep.Imported)).Int("skipped", len(rep.Skipped)).Msg("import finished")
	return rep, nil
}

// knownKinds maps each owner UUID (32-hex) the store knows, by a quota
// scope on vol or a folder on any volume, to its kinds.
func (s *Service) knownKinds(ctx context.Context, vol string) (map[string][]meta.OwnerKind, error) {
	out := map[string][]meta.OwnerKind{}
	add := func(id meta.ScopeID) {
		if !containsKind(out[id.UUID], id.Kind) {
			out[id.UUID] = append(out[id.UUID], id.Kind)
		}
	}
	scs, err := s.store.ListScopes(ctx, vol)
	if err != nil {
		return nil, err
	}
	for _, sc := range scs {
		add(sc.ID)
	}
	fs, err := s.store.ListFolders(ctx, meta.FolderFilter{IncludeDeleted: true})
	if err != nil {
		return nil, err
	}
	for _, f := range fs {
		add(f.Owner)
	}
	return out, nil
}

// kindsOf is known[hex], completed (once per hex) by the memberships: a
// UUID with members is a project, one that is a member is a user.
func (s *Service) kindsOf(ctx context.Context, known map[string][]meta.OwnerKind, hex string) ([]meta.OwnerKind, error) {
	if kk, ok := known[hex]; ok {
		return kk, nil
	}
	var kk []meta.OwnerKind
	ms, err := s.store.ListMembers(ctx, hex)
	if err != nil {
		return nil, err
	}
	if len(ms) > 0 {
		kk = append(kk, meta.KindProject)
	}
	if ms, err = s.store.ProjectsOf(ctx, hex); err != nil {
		return nil, err
	}
	if len(ms) > 0 {
		kk = append(kk, meta.KindUser)
	}
	known[hex] = kk
	return kk, nil
}

func containsKind(ks []meta.OwnerKind, k meta.OwnerKind) bool {
	for _, x := range ks {
		if x == k {
			return true
		}
	}
	return false
}

// importScope makes sure the owner has a quota scope on vol (created
// with the policy's or the daemon's default limit when missing) and that
// the ledger holds its limit.
func (s *Service) importScope(ctx context.Context, vol string, owner meta.ScopeID) error {
	sc, err := s.store.GetScope(ctx, vol, owner)
	if err == nil {
		return s.syncLimit(ctx, sc)
	}
	if !errors.Is(err, meta.ErrNotFound) {
		return err
	}
	p, err := s.store.GetPolicy(ctx, owner)
	if err != nil {
		return err
	}
	limit := p.MaxQuotaScopeSize
	if limit == 0 {
		limit = s.opts.DefaultScopeLimit
	}
	s.limitMu.Lock()
	defer s.limitMu.Unlock()
	err = s.store.CreateScope(ctx, meta.QuotaScope{Volume: vol, ID: owner, LimitBytes: limit})
	if err != nil && !errors.Is(err, meta.ErrExists) {
		return err
	}
	if sc, err = s.store.GetScope(ctx, vol, owner); err != nil {
		return err
	}
	if err := s.limitChanged(sc); err != nil {
		return err
	}
	s.log.Info().Str("scope", owner.String()).Str("volume", vol).Int64("limit_bytes", sc.LimitBytes).Msg("import: quota scope created")
	return nil
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// listProblems is the problem list of an import's error, one per line,
// at most maxListedProblems of them.
func listProblems(ps []api.ImportProblem) string {
	var b strings.Builder
	for i, p := range ps {
		if i == maxListedProblems {
			fmt.Fprintf(&b, "  ... and %d more\n", len(ps)-i)
			break
		}
		where := p.Path
		if where == "" {
			where = "(names file)"
		}
		fmt.Fprintf(&b, "  %s: %s\n", where, p.Reason)
	}
	return strings.TrimRight(b.String(), "\n")
}
