package server

import (
	"net/http"
	"net/url"

	"github.com/vfolder/vfolder/api"
)

// sshkeyRoutes are the SSH key calls (api/sshkeys.go).
func (s *Server) sshkeyRoutes() {
	s.handle("GET /v1/users/{user}/ssh-keys", s.listSSHKeys)
	s.handle("POST /v1/users/{user}/ssh-keys", s.addSSHKey)
	s.handle("DELETE /v1/users/{user}/ssh-keys/{key}", s.removeSSHKey)
}

func (s *Server) listSSHKeys(r *http.Request, _ url.Values) (int, any, error) {
	v, err := s.svc.SSHKeys(r.Context(), r.PathValue("user"))
	return http.StatusOK, v, err
}

func (s *Server) addSSHKey(r *http.Request, _ url.Values) (int, any, error) {
	var req api.AddSSHKeyRequest
	if err := decode(r, &req); err != nil {
		return 0, nil, err
	}
	v, err := s.svc.AddSSHKey(r.Context(), r.PathValue("user"), req)
	return http.StatusCreated, v, err
}

func (s *Server) removeSSHKey(r *http.Request, _ url.Values) (int, any, error) {
	v, err := s.svc.RemoveSSHKey(r.Context(), r.PathValue("user"), r.PathValue("key"))
	return http.StatusOK, v, err
}
