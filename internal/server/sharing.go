package server

// Routes of sharing (service/sharing.go): invitations, per-folder shares,
// and what a user can reach.
//
//	POST   /v1/invitations                     api.InviteRequest -> 201 api.Invitation
//	POST   /v1/invitations/{id}/accept         api.InvitationActionRequest (optional) -> api.Invitation
//	POST   /v1/invitations/{id}/reject         same
//	POST   /v1/invitations/{id}/cancel         same
//	GET    /v1/users/{user}/invitations        -> []api.Invitation (sent and received)
//	GET    /v1/users/{user}/reach              -> []api.ReachedFolder
//	GET    /v1/users/{user}/status             -> api.UserStatus
//	POST   /v1/users/{user}/leave              api.LeaveRequest -> api.Share (the share given up)
//	GET    /v1/folders/{ref}/shares?owner=     -> []api.Share
//	POST   /v1/folders/{ref}/shares?owner=     api.ShareRequest -> api.Share
//	DELETE /v1/folders/{ref}/shares/{user}?owner= -> api.Share (the share removed)

import (
	"net/http"
	"net/url"

	"github.com/vfolder/vfolder/api"
	"github.com/vfolder/vfolder/meta"
)

func (s *Server) sharingRoutes() {
	s.handle("POST /v1/invitations", s.invite)
	s.handle("POST /v1/invitations/{id}/{action}", s.settleInvitation)
	s.handle("GET /v1/users/{user}/invitations", s.listInvitations)
	s.handle("GET /v1/users/{user}/reach", s.userReach)
	s.handle("GET /v1/users/{user}/status", s.userStatus)
	s.handle("POST /v1/users/{user}/leave", s.leave)
	s.handle("GET /v1/folders/{ref}/shares", s.listShares, "owner")
	s.handle("POST /v1/folders/{ref}/shares", s.setShare, "owner")
	s.handle("DELETE /v1/folders/{ref}/shares/{user}", s.unshare, "owner")
}

func (s *Server) invite(r *http.Request, _ url.Values) (int, any, error) {
	var req api.InviteRequest
	if err := decode(r, &req); err != nil {
		return 0, nil, err
	}
	inv, err := s.svc.Invite(r.Context(), req)
	return http.StatusCreated, inv, err
}

var settleActions = map[string]meta.InvitationState{
	"accept": meta.InviteAccepted,
	"reject": meta.InviteRejected,
	"cancel": meta.InviteCanceled,
}

func (s *Server) settleInvitation(r *http.Request, _ url.Values) (int, any, error) {
	state, ok := settleActions[r.PathValue("action")]
	if !ok {
		return 0, nil, invalid("unknown invitation action %q: accept, reject or cancel", r.PathValue("action"))
	}
	var req api.InvitationActionRequest
	if err := decodeOptional(r, &req); err != nil {
		return 0, nil, err
	}
	inv, err := s.svc.SettleInvitation(r.Context(), r.PathValue("id"), req.User, state)
	return http.StatusOK, inv, err
}

func (s *Server) listInvitations(r *http.Request, _ url.Values) (int, any, error) {
	is, err := s.svc.Invitations(r.Context(), r.PathValue("user"))
	return http.StatusOK, is, err
}

func (s *Server) userReach(r *http.Request, _ url.Values) (int, any, error) {
	fs, err := s.svc.ReachedFolders(r.Context(), r.PathValue("user"))
	return http.StatusOK, fs, err
}

func (s *Server) userStatus(r *http.Request, _ url.Values) (int, any, error) {
	st, err := s.svc.UserStatus(r.Context(), r.PathValue("user"))
	return http.StatusOK, st, err
}

func (s *Server) leave(r *http.Request, _ url.Values) (int, any, error) {
	var req api.LeaveRequest
	if err := decode(r, &req); err != nil {
		return 0, nil, err
	}
	sh, err := s.svc.Leave(r.Context(), r.PathValue("user"), req.Folder)
	return http.StatusOK, sh, err
}

func (s *Server) listShares(r *http.Request, q url.Values) (int, any, error) {
	owner, err := ownerParam(q)
	if err != nil {
		return 0, nil, err
	}
	ss, err := s.svc.Shares(r.Context(), r.PathValue("ref"), owner)
	return http.StatusOK, ss, err
}

func (s *Server) setShare(r *http.Request, q url.Values) (int, any, error) {
	owner, err := ownerParam(q)
	if err != nil {
		return 0, nil, err
	}
	var req api.ShareRequest
	if err := decode(r, &req); err != nil {
		return 0, nil, err
	}
	sh, err := s.svc.SetShare(r.Context(), r.PathValue("ref"), owner, req)
	return http.StatusOK, sh, err
}

func (s *Server) unshare(r *http.Request, q url.Values) (int, any, error) {
	owner, err := ownerParam(q)
	if err != nil {
		return 0, nil, err
	}
	sh, err := s.svc.Unshare(r.Context(), r.PathValue("ref"), owner, r.PathValue("user"))
	return http.StatusOK, sh, err
}
