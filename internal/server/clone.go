package server

import (
	"net/http"
	"net/url"

	"github.com/vfolder/vfolder/api"
)

// cloneRoutes: POST /v1/folders/{ref}/clone starts a clone and answers
// with the new folder (status cloning, with its progress) at once.
func (s *Server) cloneRoutes() {
	s.handle("POST /v1/folders/{ref}/clone", s.cloneFolder, "owner")
}

func (s *Server) cloneFolder(r *http.Request, q url.Values) (int, any, error) {
	owner, err := ownerParam(q)
	if err != nil {
		return 0, nil, err
	}
	var req api.CloneRequest
	if err := decode(r, &req); err != nil {
		return 0, nil, err
	}
	f, err := s.svc.Clone(r.Context(), r.PathValue("ref"), owner, req)
	return http.StatusOK, f, err
}
