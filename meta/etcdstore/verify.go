package etcdstore

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/vfolder/vfolder/meta"
)

// Verify checks, reading every key below P m/ at one revision, that every
// record is well-formed and stored under its own key, that folder records
// and name keys match one to one, that the per-owner counts match the
// records, that memberships and their copies under the user match one to
// one, and that every session has exactly its folder index entries (one
// key per folder, or the bulk key for a session with many folders). It
// returns an error wrapping meta.ErrCorrupt if not.
func (s *Store) Verify(ctx context.Context) error {
	return s.read(ctx, "verify", func(ctx context.Context) error {
		kvs, _, err := s.scan(ctx, s.pfx, 0, false)
		if err != nil {
			return err
		}
		byFam := map[string]map[string][]byte{}
		for _, kv := range kvs {
			fam, rest := s.family(kv.Key)
			if byFam[fam] == nil {
				byFam[fam] = map[string][]byte{}
			}
			byFam[fam][rest] = kv.Value
		}
		for _, check := range []func(map[string]map[string][]byte) error{s.verifyFolders, s.verifyMembers, s.verifySessions, s.verifyShares, s.verifySSHKeys} {
			if err := check(byFam); err != nil {
				return err
			}
		}
		return nil
	})
}

func corrupt(format string, a ...any) error {
	return fmt.Errorf("%w: etcdstore: %s", meta.ErrCorrupt, fmt.Sprintf(format, a...))
}

func (s *Store) verifyFolders(byFam map[string]map[string][]byte) error {
	counts := map[string]int{}
	names := map[string]string{} // "<owner>/<name>" -> id
	for id, val := range byFam["folder"] {
		f, err := decode[meta.Folder]([]byte(s.folderKey(id)), val)
		if err != nil {
			return err
		}
		if f.ID != id {
			return corrupt("folder stored under %q has id %q", id, f.ID)
		}
		if _, err := meta.PrepareFolder(f, 0); err != nil {
			return corrupt("folder %s: %v", id, err)
		}
		counts[f.Owner.String()]++
		names[f.Owner.String()+"/"+f.Name] = id
	}
	for k, id := range byFam["name"] {
		if names[k] != string(id) {
			return corrupt("name key %q points to folder %q, whose record says otherwise", k, id)
		}
	}
	if len(byFam["name"]) != len(names) {
		return corrupt("%d name keys for %d folders", len(byFam["name"]), len(names))
	}
	for owner, val := range byFam["count"] {
		if n, err := strconv.Atoi(string(val)); err != nil || n != counts[owner] {
			return corrupt("folder count of %s is %q, but it has %d folders", owner, val, counts[owner])
		}
	}
	if len(byFam["count"]) != len(counts) {
		return corrupt("folder counts kept for %d owners, folders exist for %d", len(byFam["count"]), len(counts))
	}
	return nil
}

func (s *Store) verifyMembers(byFam map[string]map[string][]byte) error {
	for k, val := range byFam["member"] {
		m, err := decode[meta.Membership]([]byte(s.pfx+"member/"+k), val)
		if err != nil {
			return err
		}
		if err := meta.CheckMembership(m); err != nil {
			return corrupt("membership %q: %v", k, err)
		}
		if k != m.Project+"/"+m.User {
			return corrupt("membership stored under %q is of user %q in project %q", k, m.User, m.Project)
		}
		if cp := byFam["memberof"][m.User+"/"+m.Project]; string(cp) != string(val) {
			return corrupt("the copy of membership %q under its user is %q", k, cp)
		}
	}
	if len(byFam["memberof"]) != len(byFam["member"]) {
		return corrupt("%d membership copies under users for %d memberships", len(byFam["memberof"]), len(byFam["member"]))
	}
	return nil
}

func (s *Store) verifySessions(byFam map[string]map[string][]byte) error {
	entries := 0
	for id, val := range byFam["session"] {
		sess, err := decodeSession([]byte(s.sessionKey(id)), val)
		if err != nil {
			return err
		}
		if sess.ID != id {
			return corrupt("session stored under %q has id %q", id, sess.ID)
		}
		if err := meta.ValidateSession(sess); err != nil {
			return corrupt("session %q: %v", id, err)
		}
		folders := meta.SessionFolders(sess)
		bulk, isBulk := byFam["sessbulk"][id]
		if len(folders) > maxIndexedFolders {
			if !isBulk {
				return corrupt("session %s mounts %d folders and has no bulk index key", id, len(folders))
			}
			got, err := decode[[]string]([]byte(s.sessBulkKey(id)), bulk)
			if err != nil {
				return err
			}
			if !slices.Equal(got, folders) {
				return corrupt("the bulk index key of session %s lists %d folders, the session mounts %d others", id, len(got), len(folders))
			}
			continue
		}
		if isBulk {
			return corrupt("session %s mounts %d folders but has a bulk index key", id, len(folders))
		}
		for _, f := range folders {
			if _, ok := byFam["sessfolder"][f+"/"+id]; !ok {
				return corrupt("session %s mounts folder %s but the folder index lacks it", id, f)
			}
		}
		entries += len(folders)
	}
	for k := range byFam["sessbulk"] {
		if _, ok := byFam["session"][k]; !ok {
			return corrupt("bulk index key of session %s, which does not exist", k)
		}
	}
	if len(byFam["sessfolder"]) != entries {
		var stray []string
		for k := range byFam["sessfolder"] {
			stray = append(stray, k)
		}
		slices.Sort(stray)
		return corrupt("%d folder index entries for %d folder mounts of sessions (%s)", len(stray), entries, strings.Join(stray[:min(len(stray), 5)], ", "))
	}
	return nil
}
