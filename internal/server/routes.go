package server

// This file lists the routes a Server registered, for the OpenAPI check
// (api/openapi.yaml must describe exactly these) and for tools.

import (
	"net/http"
	"regexp"
	"slices"
	"strings"
)

// Route is one registered route.
type Route struct {
	// Method and Path are the two halves of the ServeMux pattern
	// ("GET", "/v1/folders/{ref}").
	Method, Path string
	// PathParams are the {names} in Path, in order.
	PathParams []string
	// QueryParams are the query parameters the route accepts (any other
	// is refused), sorted.
	QueryParams []string
	// Public routes are reachable by callers without admin rights; they
	// authorize each request themselves.
	Public bool
	// Token routes (the file API's) also let through a caller without
	// admin rights who presents a bearer token; the file API checks it.
	Token bool
}

var wildcard = regexp.MustCompile(`\{([^{}.]+)(\.\.\.)?\}`)

func newRoute(pattern string, params []string, public bool) Route {
	method, path, _ := strings.Cut(pattern, " ")
	r := Route{Method: method, Path: path, Public: public, QueryParams: slices.Sorted(slices.Values(params))}
	for _, m := range wildcard.FindAllStringSubmatch(path, -1) {
		r.PathParams = append(r.PathParams, m[1])
	}
	return r
}

// Routes lists every registered route, in registration order.
func (s *Server) Routes() []Route { return slices.Clone(s.registered) }

// isPublic reports whether r goes to a route registered with handlePublic.
func (s *Server) isPublic(r *http.Request) bool {
	if len(s.public) == 0 {
		return false
	}
	_, pattern := s.mux.Handler(r)
	return pattern != "" && s.public[pattern]
}
