package server

import (
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"

	"github.com/vfolder/vfolder/api"
	"github.com/vfolder/vfolder/internal/files"
)

// TestFileRoutesListed: a server without a file API still lists the file
// routes (from files.RouteTable, Token as there) and answers them 503.
func TestFileRoutesListed(t *testing.T) {
	s := New(nil, Options{})
	byKey := map[string]Route{}
	for _, r := range s.Routes() {
		byKey[r.Method+" "+r.Path] = r
	}
	for _, fr := range files.RouteTable() {
		r, ok := byKey[fr.Pattern()]
		if !ok {
			t.Errorf("%s is not listed", fr.Pattern())
			continue
		}
		if r.Token != fr.Token || r.Public || !slices.Equal(r.QueryParams, fr.Query) {
			t.Errorf("%s listed as %+v, the file API's table says %+v", fr.Pattern(), r, fr)
		}
		h, pattern := s.mux.Handler(httptest.NewRequest(fr.Method, "http://x"+fr.Path, nil))
		if pattern != fr.Pattern() {
			t.Errorf("%s: the mux routes it to %q", fr.Pattern(), pattern)
			continue
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest(fr.Method, "http://x"+fr.Path, nil))
		if w.Code != http.StatusServiceUnavailable {
			t.Errorf("%s without a file API: %d, want 503 %s", fr.Pattern(), w.Code, api.CodeUnavailable)
		}
	}
}
