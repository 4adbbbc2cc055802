package meta

import (
	"encoding/json"
	"testing"
)

func TestPolicyValueMethods(t *testing.T) {
	var zero Policy
	if !zero.IsZero() || !zero.VolumeAllows("any", "clone") {
		t.Errorf("the zero policy must allow everything")
	}
	none := Policy{Volumes: map[string][]string{}}
	if none.IsZero() || none.VolumeAllows("any", "clone") || none.Equal(zero) {
		t.Errorf("an empty volume map must allow nothing and differ from nil")
	}
	a := Policy{Volumes: map[string][]string{"v": {"b", "a", "a"}}}
	b := Policy{Volumes: map[string][]string{"v": {"a", "b"}}}
	c := Policy{Volumes: map[string][]string{"v": {"a", "a", "c"}}}
	if !a.Equal(b) || a.Equal(c) || b.Equal(Policy{Volumes: map[string][]string{"w": {"a", "b"}}}) {
		t.Errorf("Equal: a~b %v, a~c %v", a.Equal(b), a.Equal(c))
	}
	cl := a.Clone()
	cl.Volumes["v"][0] = "x"
	cl.Volumes["w"] = nil
	if a.Volumes["v"][0] != "b" || len(a.Volumes) != 1 {
		t.Errorf("Clone shares memory with the original: %+v", a)
	}
	// JSON: nil leaves the field out (the earlier form), {} stays {}.
	for _, tc := range []struct {
		p    Policy
		want string
	}{
		{Policy{MaxFolderCount: 2}, `{"max_vfolder_count":2,"max_quota_scope_size":0}`},
		{none, `{"max_vfolder_count":0,"max_quota_scope_size":0,"allowed_volume_perms":{}}`},
		{b, `{"max_vfolder_count":0,"max_quota_scope_size":0,"allowed_volume_perms":{"v":["a","b"]}}`},
	} {
		got, err := json.Marshal(tc.p)
		if err != nil || string(got) != tc.want {
			t.Errorf("Marshal(%+v) = %s, %v; want %s", tc.p, got, err, tc.want)
		}
		var back Policy
		if err := json.Unmarshal(got, &back); err != nil || !back.Equal(tc.p) {
			t.Errorf("round trip of %s = %+v, %v", got, back, err)
		}
	}
}
