package server

// Routes of folder options and volume import (api/volopts.go).

import (
	"net/http"
	"net/url"

	"github.com/vfolder/vfolder/api"
)

// optionsRoutes registers the folder-options and volume-import routes.
func (s *Server) optionsRoutes() {
	s.handle("PATCH /v1/folders/{ref}/options", s.updateOptions, "owner")
	s.handle("POST /v1/volumes/{volume}/import", s.importVolume)
	s.handle("GET /v1/volumes/{volume}/import", s.importProgress)
}

func (s *Server) importProgress(r *http.Request, _ url.Values) (int, any, error) {
	p, err := s.svc.ImportProgress(r.PathValue("volume"))
	return http.StatusOK, p, err
}

func (s *Server) updateOptions(r *http.Request, q url.Values) (int, any, error) {
	owner, err := ownerParam(q)
	if err != nil {
		return 0, nil, err
	}
	var req api.UpdateOptionsRequest
	if err := decode(r, &req); err != nil {
		return 0, nil, err
	}
	f, err := s.svc.UpdateOptions(r.Context(), r.PathValue("ref"), owner, req)
	return http.StatusOK, f, err
}

func (s *Server) importVolume(r *http.Request, _ url.Values) (int, any, error) {
	var req api.ImportRequest
	if err := decodeOptional(r, &req); err != nil {
		return 0, nil, err
	}
	rep, err := s.svc.ImportVolume(r.Context(), r.PathValue("volume"), req)
	return http.StatusOK, rep, err
}
