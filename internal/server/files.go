package server

// The file API (package files) on this server: its routes, and the one
// exception to the identity gate: a request that carries a bearer token
// may reach the file routes (only those) whoever its peer is; the token
// is checked there.

import (
	"net/http"

	"github.com/vfolder/vfolder/internal/files"
)

func (s *Server) filesRoutes() {
	if s.opts.Files == nil {
		return
	}
	s.opts.Files.Routes(func(pattern string, h http.Handler) {
		s.mux.Handle(pattern, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			p, _ := r.Context().Value(peerKey{}).(peer)
			h.ServeHTTP(w, r.WithContext(files.WithAdmin(r.Context(), p.err == nil && p.allowed)))
		}))
	})
}

// tokenRequest tells whether r carries credentials of its own for a file
// route (the identity gate lets it through to the file API's own check).
func tokenRequest(r *http.Request) bool {
	return r.Header.Get("Authorization") != "" && files.IsFileRoute(r.URL.Path)
}
