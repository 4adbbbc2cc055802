package main

import (
	"context"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/vfolder/vfolder/internal/config"
)

// TestFlagsMatchREADME: every flag and environment variable the README's
// Configuration section names exists, and every flag of vfolderd is in
// that section.
func TestFlagsMatchREADME(t *testing.T) {
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	text := string(b)
	i := strings.Index(text, "\n## Configuration\n")
	if i < 0 {
		t.Fatal("README has no Configuration section")
	}
	sec := text[i+1:]
	if j := strings.Index(sec[3:], "\n## "); j >= 0 {
		sec = sec[:j+3]
	}
	app := newApp(func(context.Context, *config.Config) error { return nil })
	flags := map[string]bool{}
	envs := map[string]bool{}
	for _, f := range app.Flags {
		for _, n := range f.Names() {
			flags[n] = true
		}
		if ev, ok := f.(interface{ GetEnvVars() []string }); ok {
			for _, e := range ev.GetEnvVars() {
				envs[e] = true
			}
		}
	}
	// Only the table names flags of vfolderd (the text also quotes the
	// CLI's).
	var table []string
	for _, l := range strings.Split(sec, "\n") {
		if strings.HasPrefix(l, "| `") {
			table = append(table, l)
		}
	}
	tbl := strings.Join(table, "\n")
	for _, m := range regexp.MustCompile("`(--[a-z][a-z0-9-]*)").FindAllStringSubmatch(tbl, -1) {
		if !flags[strings.TrimPrefix(m[1], "--")] {
			t.Errorf("README's configuration table names %s, which vfolderd does not take", m[1])
		}
	}
	for _, m := range regexp.MustCompile(`(?:^|[^A-Z_])(VFOLDER_[A-Z_]+)`).FindAllStringSubmatch(tbl, -1) {
		if !envs[m[1]] {
			t.Errorf("README's configuration table names %s, which vfolderd does not read", m[1])
		}
	}
	for _, f := range app.Flags {
		names := f.Names()
		if slices.Contains(names, "help") || slices.Contains(names, "version") {
			continue
		}
		if !strings.Contains(sec, "`--"+names[0]) {
			t.Errorf("vfolderd's flag --%s is not in the README's Configuration section", names[0])
		}
	}
}
