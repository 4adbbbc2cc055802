package meta

import (
	"context"
	"fmt"
)

// memShares holds the shares and invitations of a Memory store, under its
// lock. Maps are made on first write; reads of nil maps see nothing.
type memShares struct {
	// shares[folder][user] is the record; shareOf[user][folder] its
	// reverse index.
	shares  map[string]map[string]Share
	shareOf map[string]map[string]bool
	// invitations by id; pending[folder+"/"+invitee] is the id of the
	// pending one.
	invitations map[string]Invitation
	pending     map[string]string
}

func (sh *memShares) init() {
	if sh.shares == nil {
		sh.shares = map[string]map[string]Share{}
		sh.shareOf = map[string]map[string]bool{}
		sh.invitations = map[string]Invitation{}
		sh.pending = map[string]string{}
	}
}

func (sh *memShares) put(s Share) {
	sh.init()
	if sh.shares[s.Folder] == nil {
		sh.shares[s.Folder] = map[string]Share{}
	}
	sh.shares[s.Folder][s.User] = s
	if sh.shareOf[s.User] == nil {
		sh.shareOf[s.User] = map[string]bool{}
	}
	sh.shareOf[s.User][s.Folder] = true
}

func (sh *memShares) remove(folder, user string) {
	delete(sh.shares[folder], user)
	if len(sh.shares[folder]) == 0 {
		delete(sh.shares, folder)
	}
	delete(sh.shareOf[user], folder)
	if len(sh.shareOf[user]) == 0 {
		delete(sh.shareOf, user)
	}
}

func (m *Memory) folderExists(id string) error {
	if _, ok := m.folders[id]; !ok {
		return fmt.Errorf("%w: no folder has id %s", ErrNotFound, id)
	}
	return nil
}

// CreateInvitation stores a new pending invitation.
func (m *Memory) CreateInvitation(ctx context.Context, inv Invitation) error {
	if err := m.lock(); err != nil {
		return err
	}
	defer m.mu.Unlock()
	inv, err := PrepareInvitation(inv)
	if err != nil {
		return err
	}
	if err := m.folderExists(inv.Folder); err != nil {
		return err
	}
	if _, ok := m.sh.invitations[inv.ID]; ok {
		return fmt.Errorf("%w: invitation id %s is taken", ErrExists, inv.ID)
	}
	if id, ok := m.sh.pending[inv.Folder+"/"+inv.Invitee]; ok {
		return fmt.Errorf("%w: invitation %s of folder %s to user %s is pending", ErrExists, id, inv.Folder, inv.Invitee)
	}
	if _, ok := m.sh.shares[inv.Folder][inv.Invitee]; ok {
		return fmt.Errorf("%w: user %s holds a share of folder %s already", ErrExists, inv.Invitee, inv.Folder)
	}
	m.sh.init()
	m.sh.invitations[inv.ID] = inv
	m.sh.pending[inv.Folder+"/"+inv.Invitee] = inv.ID
	return nil
}

// GetInvitation returns an invitation.
func (m *Memory) GetInvitation(ctx context.Context, id string) (Invitation, error) {
	if err := m.rlock(); err != nil {
		return Invitation{}, err
	}
	defer m.mu.RUnlock()
	id, err := ParseInvitationID(id)
	if err != nil {
		return Invitation{}, err
	}
	inv, ok := m.sh.invitations[id]
	if !ok {
		return Invitation{}, fmt.Errorf("%w: no invitation has id %s", ErrNotFound, id)
	}
	return inv, nil
}

// ListInvitations returns the invitations user sent or received.
func (m *Memory) ListInvitations(ctx context.Context, user string) ([]Invitation, error) {
	if err := m.rlock(); err != nil {
		return nil, err
	}
	defer m.mu.RUnlock()
	user, err := parseMemberArg("user", user)
	if err != nil {
		return nil, err
	}
	out := []Invitation{}
	for _, inv := range m.sh.invitations {
		if InvitationOf(inv, user) {
			out = append(out, inv)
		}
	}
	SortInvitations(out)
	return out, nil
}

// SettleInvitation settles a pending invitation.
func (m *Memory) SettleInvitation(ctx context.Context, id string, state InvitationState) (Invitation, error) {
	if err := m.lock(); err != nil {
		return Invitation{}, err
	}
	defer m.mu.Unlock()
	id, err := ParseInvitationID(id)
	if err != nil {
		return Invitation{}, err
	}
	old, ok := m.sh.invitations[id]
	if !ok {
		return Invitation{}, fmt.Errorf("%w: no invitation has id %s", ErrNotFound, id)
	}
	inv, err := SettleRecord(old, state)
	if err != nil {
		return Invitation{}, err
	}
	var share Share
	if state == InviteAccepted {
		if err := m.folderExists(inv.Folder); err != nil {
			return Invitation{}, err
		}
		if _, ok := m.sh.shares[inv.Folder][inv.Invitee]; ok {
			return Invitation{}, fmt.Errorf("%w: user %s holds a share of folder %s already", ErrExists, inv.Invitee, inv.Folder)
		}
		if share, err = PrepareShare(Share{Folder: inv.Folder, User: inv.Invitee, Permission: inv.Permission}, nil); err != nil {
			return Invitation{}, err
		}
		m.sh.put(share)
	}
	m.sh.invitations[id] = inv
	delete(m.sh.pending, inv.Folder+"/"+inv.Invitee)
	return inv, nil
}

// PutShare creates or replaces a share.
func (m *Memory) PutShare(ctx context.Context, sh Share) error {
	if err := m.lock(); err != nil {
		return err
	}
	defer m.mu.Unlock()
	if err := checkShare(sh); err != nil {
		return err
	}
	if err := m.folderExists(sh.Folder); err != nil {
		return err
	}
	var oldp *Share
	if old, ok := m.sh.shares[sh.Folder][sh.User]; ok {
		oldp = &old
	}
	sh, err := PrepareShare(sh, oldp)
	if err != nil {
		return err
	}
	m.sh.put(sh)
	return nil
}

// GetShare returns the share of folder to user.
func (m *Memory) GetShare(ctx context.Context, folder, user string) (Share, error) {
	if err := m.rlock(); err != nil {
		return Share{}, err
	}
	defer m.mu.RUnlock()
	folder, user, err := ParseShareArgs(folder, user)
	if err != nil {
		return Share{}, err
	}
	sh, ok := m.sh.shares[folder][user]
	if !ok {
		return Share{}, fmt.Errorf("%w: user %s has no share of folder %s", ErrNotFound, user, folder)
	}
	return sh, nil
}

// RemoveShare removes a share.
func (m *Memory) RemoveShare(ctx context.Context, folder, user string) error {
	if err := m.lock(); err != nil {
		return err
	}
	defer m.mu.Unlock()
	folder, user, err := ParseShareArgs(folder, user)
	if err != nil {
		return err
	}
	if _, ok := m.sh.shares[folder][user]; !ok {
		return fmt.Errorf("%w: user %s has no share of folder %s", ErrNotFound, user, folder)
	}
	m.sh.remove(folder, user)
	return nil
}

// ListShares returns the shares of a folder, ordered by user.
func (m *Memory) ListShares(ctx context.Context, folder string) ([]Share, error) {
	if err := m.rlock(); err != nil {
		return nil, err
	}
	defer m.mu.RUnlock()
	folder, err := parseFolderID(folder)
	if err != nil {
		return nil, err
	}
	out := make([]Share, 0, len(m.sh.shares[folder]))
	for _, sh := range m.sh.shares[folder] {
		out = append(out, sh)
	}
	SortShares(out)
	return out, nil
}

// SharesOf returns the shares a user holds, ordered by folder.
func (m *Memory) SharesOf(ctx context.Context, user string) ([]Share, error) {
	if err := m.rlock(); err != nil {
		return nil, err
	}
	defer m.mu.RUnlock()
	user, err := parseMemberArg("user", user)
	if err != nil {
		return nil, err
	}
	out := make([]Share, 0, len(m.sh.shareOf[user]))
	for folder := range m.sh.shareOf[user] {
		out = append(out, m.sh.shares[folder][user])
	}
	SortShares(out)
	return out, nil
}

// DeleteFolderShares removes every share and invitation of a folder.
func (m *Memory) DeleteFolderShares(ctx context.Context, folder string) error {
	if err := m.lock(); err != nil {
		return err
	}
	defer m.mu.Unlock()
	folder, err := parseFolderID(folder)
	if err != nil {
		return err
	}
	for user := range m.sh.shares[folder] {
		m.sh.remove(folder, user)
	}
	for id, inv := range m.sh.invitations {
		if inv.Folder == folder {
			delete(m.sh.invitations, id)
			delete(m.sh.pending, inv.Folder+"/"+inv.Invitee)
		}
	}
	return nil
}

// AllShares returns every share, ordered by folder, then user.
func (m *Memory) AllShares(ctx context.Context) ([]Share, error) {
	if err := m.rlock(); err != nil {
		return nil, err
	}
	defer m.mu.RUnlock()
	out := []Share{}
	for _, byUser := range m.sh.shares {
		for _, sh := range byUser {
			out = append(out, sh)
		}
	}
	SortShares(out)
	return out, nil
}
