package files

import (
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/rs/zerolog"
)

// TestRouteTable: Routes registers exactly the RouteTable patterns (into a
// real ServeMux, which refuses conflicts), every route refuses a query
// parameter it does not list and takes those it lists, and exactly the
// file routes (IsFileRoute) accept a token.
func TestRouteTable(t *testing.T) {
	dir := t.TempDir()
	a, err := New(nil, Options{KeyFile: filepath.Join(dir, "token.key"), RecordDir: filepath.Join(dir, "uploads"), Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	mux := http.NewServeMux()
	var registered []string
	a.Routes(func(pattern string, h http.Handler) {
		registered = append(registered, pattern)
		mux.Handle(pattern, h)
	})
	table := RouteTable()
	var listed []string
	for _, r := range table {
		listed = append(listed, r.Pattern())
		if !slices.IsSorted(r.Query) {
			t.Errorf("%s: query parameters %v are not sorted", r.Pattern(), r.Query)
		}
		if want := r.Path != "/v1/tokens"; r.Token != want {
			t.Errorf("%s: Token %v, want %v", r.Pattern(), r.Token, want)
		}
	}
	if !slices.Equal(registered, listed) {
		t.Fatalf("Routes registers %v, RouteTable lists %v", registered, listed)
	}
	for _, r := range table {
		path := strings.ReplaceAll(strings.ReplaceAll(r.Path, "{ref}", "data"), "{id}", "x")
		w := httptest.NewRecorder()
		mux.ServeHTTP(w, httptest.NewRequest(r.Method, path+"?bogus=1", nil))
		if w.Code != http.StatusBadRequest || (r.Method != "HEAD" && !strings.Contains(w.Body.String(), `\"bogus\"`)) {
			t.Errorf("%s with ?bogus=1: %d %s, want 400 naming the parameter", r.Pattern(), w.Code, w.Body)
		}
		if len(r.Query) == 0 {
			continue
		}
		var q []string
		for _, p := range r.Query {
			q = append(q, p+"=x")
		}
		w = httptest.NewRecorder()
		mux.ServeHTTP(w, httptest.NewRequest(r.Method, path+"?"+strings.Join(q, "&"), nil))
		// No caller: the request gets past the query check to 401.
		if w.Code != http.StatusUnauthorized {
			t.Errorf("%s with %v: %d %s, want 401 (the parameters accepted)", r.Pattern(), r.Query, w.Code, w.Body)
		}
	}
}
