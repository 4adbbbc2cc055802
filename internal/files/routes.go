package files

// The file API's routes as data: one table that both registers the
// handlers (API.Routes) and lists the routes for the server's route list
// and the OpenAPI check (RouteTable), so the two cannot drift. A route's
// query parameters are the only ones its handler accepts: the folder
// routes pass them to params, the others accept none.

import (
	"net/http"
	"slices"

	"github.com/vfolder/vfolder/api"
)

// Route is one route of the file API.
type Route struct {
	// Method and Path are the two halves of the ServeMux pattern.
	Method, Path string
	// Query lists the query parameters the route accepts (any other is
	// refused), sorted.
	Query []string
	// Token routes accept a caller without admin rights who presents a
	// bearer token (IsFileRoute); the others are for admins only.
	Token bool
}

// Pattern is the route's ServeMux pattern ("GET /v1/files/{ref}/list").
func (r Route) Pattern() string { return r.Method + " " + r.Path }

type routeEntry struct {
	method, path string
	query        []string
	// handler builds the route's handler; query is the entry's own.
	handler func(a *API, query []string) http.Handler
}

func folderEntry(method, op string, h func(a *API) folderHandler, query ...string) routeEntry {
	return routeEntry{method: method, path: "/" + api.Version + "/files/{ref}/" + op, query: query,
		handler: func(a *API, q []string) http.Handler { return a.folderRoute(h(a), q...) }}
}

// plain is a route that accepts no query parameter (its handler refuses
// any).
func plain(method, path string, h func(a *API) http.Handler) routeEntry {
	return routeEntry{method: method, path: path, handler: func(a *API, _ []string) http.Handler { return h(a) }}
}

var routeTable = []routeEntry{
	folderEntry("GET", "list", func(a *API) folderHandler { return a.list }, "path", "owner"),
	folderEntry("GET", "stat", func(a *API) folderHandler { return a.stat }, "path", "owner"),
	folderEntry("GET", "download", func(a *API) folderHandler { return a.download }, "path", "owner", "format"),
	folderEntry("POST", "mkdir", func(a *API) folderHandler { return a.mkdir }, "owner"),
	folderEntry("POST", "move", func(a *API) folderHandler { return a.move }, "owner"),
	folderEntry("POST", "delete", func(a *API) folderHandler { return a.delete }, "owner"),
	plain("GET", "/"+api.Version+"/file-jobs/{id}", func(a *API) http.Handler { return http.HandlerFunc(a.getJob) }),
	plain("POST", "/"+api.Version+"/tokens", func(a *API) http.Handler { return http.HandlerFunc(a.issue) }),
	plain("POST", api.UploadsPath, func(a *API) http.Handler { return a.tusRoute(a.tus.PostFile) }),
	plain("HEAD", api.UploadsPath+"/{id}", func(a *API) http.Handler { return a.tusRoute(a.tus.HeadFile) }),
	plain("PATCH", api.UploadsPath+"/{id}", func(a *API) http.Handler { return a.tusRoute(a.tus.PatchFile) }),
	plain("DELETE", api.UploadsPath+"/{id}", func(a *API) http.Handler { return a.tusRoute(a.tus.DelFile) }),
}

// RouteTable lists the file API's routes, in registration order. It needs
// no API: a server without a file API lists (and refuses) the same routes.
func RouteTable() []Route {
	out := make([]Route, 0, len(routeTable))
	for _, e := range routeTable {
		out = append(out, Route{Method: e.method, Path: e.path, Query: slices.Sorted(slices.Values(e.query)), Token: IsFileRoute(e.path)})
	}
	return out
}

// Routes registers the file API with handle (a ServeMux's Handle, say),
// one call per RouteTable entry with its pattern.
func (a *API) Routes(handle func(pattern string, h http.Handler)) {
	for _, e := range routeTable {
		handle(e.method+" "+e.path, e.handler(a, e.query))
	}
}
