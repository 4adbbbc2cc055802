package meta_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/vfolder/vfolder/meta"
)

const sampleUUID = "5f1e7c3a9b2d4e6f8a0b1c2d3e4f5a6b"

func TestParseUUID(t *testing.T) {
	for _, in := range []string{
		sampleUUID,
		strings.ToUpper(sampleUUID),
		"5f1e7c3a-9b2d-4e6f-8a0b-1c2d3e4f5a6b",
		"5F1E7C3A-9B2D-4E6F-8A0B-1C2D3E4F5A6B",
	} {
		got, err := meta.ParseUUID(in)
		if err != nil || got != sampleUUID {
			t.Errorf("ParseUUID(%q) = %q, %v; want %q", in, got, err, sampleUUID)
		}
	}
	for _, in := range []string{
		"",
		sampleUUID[:31],
		sampleUUID + "0",
		"{5f1e7c3a-9b2d-4e6f-8a0b-1c2d3e4f5a6b}",
		"urn:uuid:5f1e7c3a-9b2d-4e6f-8a0b-1c2d3e4f5a6b",
		"5f1e7c3a-9b2d-4e6f-8a0b1c2d3e4f5a6b-",
		"5f1e7c3a_9b2d_4e6f_8a0b_1c2d3e4f5a6b",
		strings.Repeat("g", 32),
		strings.Repeat("a", 1000),
	} {
		if got, err := meta.ParseUUID(in); !errors.Is(err, meta.ErrInvalid) {
			t.Errorf("ParseUUID(%q) = %q, %v; want ErrInvalid", in, got, err)
		}
	}
	if d := meta.DashedUUID(sampleUUID); d != "5f1e7c3a-9b2d-4e6f-8a0b-1c2d3e4f5a6b" {
		t.Errorf("DashedUUID = %q", d)
	}
	if d := meta.DashedUUID("short"); d != "short" {
		t.Errorf("DashedUUID(short) = %q, want it unchanged", d)
	}
	id := meta.NewFolderID()
	if got, err := meta.ParseUUID(id); err != nil || got != id {
		t.Errorf("NewFolderID %q does not parse as itself: %q, %v", id, got, err)
	}
}

func TestParseScopeID(t *testing.T) {
	for in, want := range map[string]meta.ScopeID{
		"user:" + sampleUUID:                           {Kind: meta.KindUser, UUID: sampleUUID},
		"project:5F1E7C3A-9B2D-4E6F-8A0B-1C2D3E4F5A6B": {Kind: meta.KindProject, UUID: sampleUUID},
		"user:5f1e7c3a-9b2d-4e6f-8a0b-1c2d3e4f5a6b":    {Kind: meta.KindUser, UUID: sampleUUID},
	} {
		got, err := meta.ParseScopeID(in)
		if err != nil || got != want {
			t.Errorf("ParseScopeID(%q) = %+v, %v; want %+v", in, got, err, want)
		}
		if got.String() != string(want.Kind)+":"+sampleUUID || got.Hex() != sampleUUID || !got.Valid() {
			t.Errorf("%+v renders as %q / %q", got, got.String(), got.Hex())
		}
	}
	for _, in := range []string{"", "user", "user:", ":" + sampleUUID, "group:" + sampleUUID, "User:" + sampleUUID,
		"user:" + sampleUUID + ":", "user: " + sampleUUID, "user:" + sampleUUID[:30]} {
		if got, err := meta.ParseScopeID(in); !errors.Is(err, meta.ErrInvalid) {
			t.Errorf("ParseScopeID(%q) = %+v, %v; want ErrInvalid", in, got, err)
		}
	}
	var zero meta.ScopeID
	if !zero.IsZero() || zero.Valid() {
		t.Error("zero ScopeID must be zero and invalid")
	}
	// JSON uses the string form and refuses malformed ids.
	s := meta.ScopeID{Kind: meta.KindProject, UUID: sampleUUID}
	raw, err := json.Marshal(s)
	if err != nil || string(raw) != `"project:`+sampleUUID+`"` {
		t.Fatalf("Marshal = %s, %v", raw, err)
	}
	var back meta.ScopeID
	if err := json.Unmarshal(raw, &back); err != nil || back != s {
		t.Errorf("Unmarshal = %+v, %v", back, err)
	}
	for _, bad := range []string{`"user:x"`, `17`, `""`} {
		if err := json.Unmarshal([]byte(bad), &back); err == nil {
			t.Errorf("Unmarshal(%s) accepted", bad)
		}
	}
}

func TestFolderPaths(t *testing.T) {
	owner := meta.ScopeID{Kind: meta.KindUser, UUID: sampleUUID}
	id := "0123456789abcdef0123456789abcdef"
	if got, want := meta.FolderRelPath(owner, id), sampleUUID+"/01/23/456789abcdef0123456789abcdef"; got != want {
		t.Errorf("FolderRelPath = %q, want %q", got, want)
	}
	f := meta.Folder{ID: id, Owner: owner}
	if got, want := f.FullID(), "user:"+sampleUUID+"/"+id; got != want {
		t.Errorf("FullID = %q, want %q", got, want)
	}
}

func isHex32(s string) bool {
	if len(s) != 32 {
		return false
	}
	for _, c := range s {
		if !strings.ContainsRune("0123456789abcdef", c) {
			return false
		}
	}
	return true
}

func FuzzParseUUID(f *testing.F) {
	for _, s := range []string{sampleUUID, strings.ToUpper(sampleUUID), meta.DashedUUID(sampleUUID),
		"{" + meta.DashedUUID(sampleUUID) + "}", "", "x", strings.Repeat("0", 32), strings.Repeat("-", 36)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		h, err := meta.ParseUUID(in)
		if err != nil {
			if !errors.Is(err, meta.ErrInvalid) {
				t.Fatalf("ParseUUID(%q) = %v, not ErrInvalid", in, err)
			}
			return
		}
		if !isHex32(h) {
			t.Fatalf("ParseUUID(%q) = %q, not 32 lowercase hex digits", in, h)
		}
		if len(in) != 32 && len(in) != 36 {
			t.Fatalf("ParseUUID accepted %q of length %d", in, len(in))
		}
		if got := strings.ToLower(strings.ReplaceAll(in, "-", "")); got != h {
			t.Fatalf("ParseUUID(%q) = %q, but the input's digits are %q", in, h, got)
		}
		d := meta.DashedUUID(h)
		for _, again := range []string{h, d, strings.ToUpper(d)} {
			if h2, err := meta.ParseUUID(again); err != nil || h2 != h {
				t.Fatalf("ParseUUID(%q) = %q, %v; want %q", again, h2, err, h)
			}
		}
		if s, err := meta.UserScope(in); err != nil || s.UUID != h || !s.Valid() {
			t.Fatalf("UserScope(%q) = %+v, %v", in, s, err)
		}
	})
}

func FuzzParseScopeID(f *testing.F) {
	for _, s := range []string{"user:" + sampleUUID, "project:" + meta.DashedUUID(sampleUUID), "user:", ":", "group:" + sampleUUID,
		"user:" + strings.ToUpper(sampleUUID), "project::" + sampleUUID} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		s, err := meta.ParseScopeID(in)
		if err != nil {
			if !errors.Is(err, meta.ErrInvalid) {
				t.Fatalf("ParseScopeID(%q) = %v, not ErrInvalid", in, err)
			}
			return
		}
		if !s.Valid() || s.IsZero() {
			t.Fatalf("ParseScopeID(%q) = %+v, not valid", in, s)
		}
		if s.Kind != meta.KindUser && s.Kind != meta.KindProject {
			t.Fatalf("ParseScopeID(%q) has kind %q", in, s.Kind)
		}
		if !strings.HasPrefix(in, string(s.Kind)+":") {
			t.Fatalf("ParseScopeID(%q) = %+v: kind is not the input's prefix", in, s)
		}
		str := s.String()
		if str != string(s.Kind)+":"+s.UUID || !isHex32(s.Hex()) {
			t.Fatalf("%+v renders as %q", s, str)
		}
		back, err := meta.ParseScopeID(str)
		if err != nil || back != s {
			t.Fatalf("ParseScopeID(String()) = %+v, %v; want %+v", back, err, s)
		}
		raw, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		var fromJSON meta.ScopeID
		if err := json.Unmarshal(raw, &fromJSON); err != nil || fromJSON != s {
			t.Fatalf("JSON round trip of %+v = %+v, %v", s, fromJSON, err)
		}
		if n, err := meta.NewScopeID(s.Kind, meta.DashedUUID(s.UUID)); err != nil || n != s {
			t.Fatalf("NewScopeID(%q, dashed) = %+v, %v", s.Kind, n, err)
		}
	})
}
