package main

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"
)

// readmeSection returns the README's text from the heading to the next
// heading of the same level.
func readmeSection(t *testing.T, heading string) string {
	t.Helper()
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	text := string(b)
	i := strings.Index(text, "\n"+heading+"\n")
	if i < 0 {
		t.Fatalf("README has no %q section", heading)
	}
	rest := text[i+len(heading)+2:]
	if j := strings.Index(rest, "\n## "); j >= 0 {
		rest = rest[:j]
	}
	return rest
}

var (
	codeSpan = regexp.MustCompile("`([^`]+)`")
	verbRE   = regexp.MustCompile(`^[a-z][a-z0-9-]*(\\\|[a-z][a-z0-9-]*)*$`)
	flagRE   = regexp.MustCompile(`(?:^|[\s\[|])(--?[a-z][a-z0-9-]*)`)
)

// leafCommands maps every visible command path ("quota-scope set") to its
// command.
func leafCommands(prefix string, cmds []*cli.Command, out map[string]*cli.Command) {
	for _, c := range cmds {
		if c.Hidden || c.Name == "help" {
			continue
		}
		for _, name := range c.Names() {
			p := strings.TrimSpace(prefix + " " + name)
			if len(c.Subcommands) == 0 {
				out[p] = c
			} else {
				leafCommands(p, c.Subcommands, out)
			}
		}
	}
}

func hasFlag(flags []cli.Flag, name string) bool {
	for _, f := range flags {
		if slices.Contains(f.Names(), name) {
			return true
		}
	}
	return false
}

// TestHelpMatchesREADME: the README's CLI reference and the CLI agree.
// Every command and flag the README names exists (a flag on at least one
// of the commands its row names, or globally), every command of the CLI is
// in the README, and so is every global flag.
func TestHelpMatchesREADME(t *testing.T) {
	app := newApp(&state{env: env{stdout: os.Stdout, stderr: os.Stderr}})
	leaves := map[string]*cli.Command{}
	leafCommands("", app.Commands, leaves)
	sec := readmeSection(t, "## CLI reference")

	mentioned := map[string]bool{}
	for _, line := range strings.Split(sec, "\n") {
		if !strings.HasPrefix(line, "| `") {
			continue
		}
		first, _, _ := strings.Cut(strings.TrimPrefix(line, "| "), " | ")
		for _, m := range codeSpan.FindAllStringSubmatch(first, -1) {
			tokens := strings.Fields(m[1])
			var paths []string
			n := 0
			for _, tok := range tokens {
				if !verbRE.MatchString(tok) {
					break
				}
				alts := strings.Split(tok, `\|`)
				if n == 0 {
					paths = alts
				} else {
					var next []string
					for _, p := range paths {
						for _, a := range alts {
							next = append(next, p+" "+a)
						}
					}
					paths = next
				}
				n++
			}
			var cmds []*cli.Command
			for _, p := range paths {
				c, ok := leaves[p]
				if !ok {
					t.Errorf("README names the command %q, which the CLI does not have", p)
					continue
				}
				mentioned[p] = true
				cmds = append(cmds, c)
			}
			rest := strings.Join(tokens[n:], " ")
			for _, fm := range flagRE.FindAllStringSubmatch(rest, -1) {
				name := strings.TrimLeft(fm[1], "-")
				ok := hasFlag(app.Flags, name)
				for _, c := range cmds {
					ok = ok || hasFlag(c.Flags, name)
				}
				if !ok && len(cmds) > 0 {
					t.Errorf("README gives %s to %v, which take no such flag", fm[1], paths)
				}
			}
		}
	}
	for p, c := range leaves {
		if mentioned[p] {
			continue
		}
		// An alias counts when the command's name is mentioned.
		canonical := false
		for q, d := range leaves {
			if d == c && mentioned[q] {
				canonical = true
			}
		}
		if !canonical {
			t.Errorf("the CLI has the command %q, which the README's CLI reference does not list", p)
		}
	}
	for _, f := range app.Flags {
		name := f.Names()[0]
		if !strings.Contains(sec, "--"+name) {
			t.Errorf("the global flag --%s is not in the README's CLI reference", name)
		}
	}
}
