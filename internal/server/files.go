package server

// The file API (package files) on this server: its routes, and the one
// exception to the identity gate: a request that carries a bearer token
// may reach the file routes (only those) whoever its peer is; the token
// is checked there.
//
// The routes come from files.RouteTable, the table the file API registers
// its handlers from, so Routes lists them (marked Token where a bearer
// token is accepted) whether or not this server has a file API; without
// one they answer 503 unavailable.

import (
	"net/http"

	"github.com/vfolder/vfolder/api"
	"github.com/vfolder/vfolder/internal/files"
)

func (s *Server) filesRoutes() {
	handlers := map[string]http.Handler{}
	if s.opts.Files != nil {
		s.opts.Files.Routes(func(pattern string, h http.Handler) { handlers[pattern] = h })
	}
	for _, fr := range files.RouteTable() {
		pattern := fr.Pattern()
		rt := newRoute(pattern, fr.Query, false)
		rt.Token = fr.Token
		s.registered = append(s.registered, rt)
		h, ok := handlers[pattern]
		if !ok {
			h = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				s.writeError(w, r, api.CodeUnavailable, "this daemon serves no file API")
			})
		}
		s.mux.Handle(pattern, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			p, _ := r.Context().Value(peerKey{}).(peer)
			h.ServeHTTP(w, r.WithContext(files.WithAdmin(r.Context(), p.err == nil && p.allowed)))
		}))
	}
}

// tokenRequest tells whether r carries credentials of its own for a file
// route (the identity gate lets it through to the file API's own check).
func tokenRequest(r *http.Request) bool {
	return r.Header.Get("Authorization") != "" && files.IsFileRoute(r.URL.Path)
}
