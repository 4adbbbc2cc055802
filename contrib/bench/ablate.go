package main

// Ablation (--ablate): what each of vfolder's data-path tunings brings.
// Every ablation is the default vfolder-rw (vfolder-ro for passthrough)
// with exactly one tuning turned off through fs.Options.Tuning or
// fs.Options.ReadAheadKB. Those are mount-wide, so each ablation has an
// fs.Mount of its own (with a quota ledger of its own, the same limit on
// the benchmark folder's scope as vfolder-rw) over the same backing
// folder. It runs only the workloads the tuning can affect, interleaved
// with the other configurations, and the report compares its medians with
// those of its default column.

import (
	"fmt"
	"slices"
	"strings"
	"time"

	vfs "github.com/vfolder/vfolder/fs"
)

// An ablation is one tuning turned off.
type ablation struct {
	id        string   // flag value; the configuration is base + "-" + id
	base      string   // the default configuration it differs from
	workloads []string // the workloads the tuning can affect, table order
	off       string   // what differs from base
	does      string   // one sentence on what the tuning does
	apply     func(*vfs.Options)
}

// ablations, in report order.
var ablations = []*ablation{
	{
		id: "maxwrite", base: cfgVfolderRW,
		workloads: []string{"seqwrite-new", "seqwrite-overwrite", "seqread-cold", "randwrite"},
		off:       "Tuning.MaxWrite = 128 KiB (go-fuse's default) instead of 1 MiB",
		does:      "the kernel may put up to 1 MiB into one WRITE or READ request instead of 128 KiB, so a large sequential transfer needs an eighth of the round trips to the daemon.",
		apply:     func(o *vfs.Options) { o.Tuning.MaxWrite = 128 << 10 },
	},
	{
		id: "killpriv", base: cfgVfolderRW,
		workloads: []string{"seqwrite-new", "randwrite", "create", "untar"},
		off:       "Tuning.NoKillPriv: FUSE_HANDLE_KILLPRIV_V2 not negotiated",
		does:      "with FUSE_HANDLE_KILLPRIV_V2 the daemon clears set-user-ID/set-group-ID itself (on write, truncate and chown), so the kernel does not ask it for security.capability (a GETXATTR round trip) before writes.",
		apply:     func(o *vfs.Options) { o.Tuning.NoKillPriv = true },
	},
	{
		id: "keepcache", base: cfgVfolderRW,
		workloads: []string{"seqread-warm", "randread-hit"},
		off:       "Tuning.NoKeepCache: opens never keep the page cache",
		does:      "an open of a file that has not changed since the daemon last reported it keeps the kernel's cached pages (FOPEN_KEEP_CACHE; what the daemon changes itself is invalidated explicitly), so a second open reads from the page cache instead of through the daemon.",
		apply:     func(o *vfs.Options) { o.Tuning.NoKeepCache = true },
	},
	{
		id: "directwrite", base: cfgVfolderRW,
		workloads: []string{"seqwrite-new", "seqwrite-overwrite", "create", "untar"},
		off:       "Tuning.NoDirectWrite: write-only opens go through the page cache",
		does:      "write-only opens of rw views use FOPEN_DIRECT_IO, so the data of a write(2) is copied once, into the WRITE request, instead of first into 4 KiB page-cache pages that are then written through.",
		apply:     func(o *vfs.Options) { o.Tuning.NoDirectWrite = true },
	},
	{
		id: "timeouts", base: cfgVfolderRW,
		workloads: []string{"find", "du", "statstorm", "stat"},
		off:       "Tuning.EntryTimeout and AttrTimeout = 1 s each (go-fuse's defaults) instead of 1 h / 1 s",
		does:      "the kernel keeps looked-up names for an hour instead of a second (the daemon notifies it of what it changes and answers ESTALE for what changed behind its back), so paths walked again are resolved without LOOKUP requests.",
		apply: func(o *vfs.Options) {
			o.Tuning.EntryTimeout = time.Second
			o.Tuning.AttrTimeout = time.Second
		},
	},
	{
		id: "negcache", base: cfgVfolderRW,
		workloads: []string{"negstat"},
		off:       "Tuning.NegativeTimeout < 0: negative entries not cached (instead of 1 s)",
		does:      "the kernel keeps the answer that a name does not exist for a second (names made through other views on the node are notified), so a search path walked again and again (python imports, PATH) does not ask the daemon for every missing name.",
		apply:     func(o *vfs.Options) { o.Tuning.NegativeTimeout = -1 },
	},
	{
		id: "readdirplus", base: cfgVfolderRW,
		workloads: []string{"find", "du"},
		off:       "Tuning.NoReaddirPlus: plain READDIR",
		does:      "READDIRPLUS returns each entry's attributes with the listing and the kernel caches them, so a walk that stats what it lists needs no LOOKUP per entry.",
		apply:     func(o *vfs.Options) { o.Tuning.NoReaddirPlus = true },
	},
	{
		id: "kernelperms", base: cfgVfolderRW,
		workloads: []string{"create", "unlink", "untar", "untar-chown", "rm", "find", "statstorm"},
		off:       "Tuning.KernelPermissions: the kernel checks permission bits (default_permissions) instead of the daemon",
		does:      "the daemon checks permission bits itself, so the mount needs no default_permissions, under which the kernel re-reads a directory's attributes (a GETATTR round trip) after every create, unlink, mkdir and rmdir in it before the next permission check.",
		apply:     func(o *vfs.Options) { o.Tuning.KernelPermissions = true },
	},
	{
		id: "readahead", base: cfgVfolderRW,
		workloads: []string{"seqread-cold"},
		off:       "ReadAheadKB = -1: the kernel's default read-ahead window (128 KiB) instead of 1 MiB",
		does:      "the mount's read-ahead window (its bdi's read_ahead_kb) is one maximal READ request (1 MiB) instead of 128 KiB, so a sequential reader keeps full-size requests in flight.",
		apply:     func(o *vfs.Options) { o.ReadAheadKB = -1 },
	},
	{
		id: "passthrough", base: cfgVfolderRO,
		workloads: []string{"seqread-cold", "seqread-warm", "randread-hit", "randread-miss"},
		off:       "Tuning.NoPassthrough: ro views read through the daemon",
		does:      "every open of a ro view hands the kernel the backing file's descriptor (FUSE passthrough), so reads go to the backing file directly, with the volume's page cache and read-ahead, and never reach the daemon.",
		apply:     func(o *vfs.Options) { o.Tuning.NoPassthrough = true },
	},
}

func ablationIDs() []string {
	var out []string
	for _, a := range ablations {
		out = append(out, a.id)
	}
	return out
}

// config is the configuration name of the ablation.
func (a *ablation) config() string { return a.base + "-" + a.id }

// ablationByConfig finds the ablation of a configuration name.
func ablationByConfig(name string) *ablation {
	for _, a := range ablations {
		if a.config() == name {
			return a
		}
	}
	return nil
}

// selectAblations resolves an --ablations value against the selected
// workloads: the ablations to run (report order) and, as notes, those
// left out because no selected workload is one they can affect.
func selectAblations(s string, workloads []string) (run []*ablation, skipped []string, err error) {
	all, items := splitList(s)
	for _, it := range items {
		if !slices.Contains(ablationIDs(), it) {
			return nil, nil, fmt.Errorf("unknown ablation %q (known: %s)", it, strings.Join(ablationIDs(), ", "))
		}
	}
	for _, a := range ablations {
		if !all && !slices.Contains(items, a.id) {
			continue
		}
		if len(a.selected(workloads)) == 0 {
			skipped = append(skipped, fmt.Sprintf("-%s not run: it only affects %s, none of which is selected", a.id, strings.Join(a.workloads, ", ")))
			continue
		}
		run = append(run, a)
	}
	return run, skipped, nil
}

// selected are the ablation's workloads among ws, in table order.
func (a *ablation) selected(ws []string) []string {
	var out []string
	for _, w := range ws {
		if slices.Contains(a.workloads, w) {
			out = append(out, w)
		}
	}
	return out
}

// withBases adds the default configurations the ablations compare with
// to configs, keeping table order.
func withBases(configs []string, abl []*ablation) []string {
	want := map[string]bool{}
	for _, c := range configs {
		want[c] = true
	}
	for _, a := range abl {
		want[a.base] = true
	}
	var out []string
	for _, n := range configNames() {
		if want[n] {
			out = append(out, n)
		}
	}
	return out
}

// wants is the set of workloads the ablation runs, given the selected
// ones.
func (a *ablation) wants(want map[string]bool) map[string]bool {
	out := map[string]bool{}
	for _, w := range a.workloads {
		if want[w] {
			out[w] = true
		}
	}
	return out
}

// ablationChange is how much faster the default configuration is than
// the ablation on w, in percent (positive: the tuning helps): the speed
// with the tuning over the speed without, minus one, where the speed of a
// time is its inverse.
func (e *env) ablationChange(w workload, a *ablation) (float64, bool) {
	return e.overhead(w, a.config(), a.base)
}

// renderAblation is the ablation table and what each tuning does; "" when
// no ablation ran.
func (e *env) renderAblation() string {
	r := e.res
	if len(r.ablated) == 0 {
		return ""
	}
	var b strings.Builder
	b.WriteString("| tuning | workload | unit | default | without the tuning | change |\n| --- | --- | --- | ---: | ---: | ---: |\n")
	var used []*ablation
	for _, name := range r.ablated {
		a := ablationByConfig(name)
		rows := a.selected(r.workloads)
		if len(rows) == 0 {
			continue
		}
		used = append(used, a)
		for _, id := range rows {
			w, _ := workloadByID(id)
			unit := w.unit + " ↓"
			if w.higher {
				unit = w.unit + " ↑"
			}
			change := "not measured"
			if v, ok := e.ablationChange(w, a); ok {
				change = fmt.Sprintf("%+.1f%%", v)
			}
			fmt.Fprintf(&b, "| -%s | %s | %s | %s | %s | %s |\n", a.id, id, unit, e.ablationCell(w, a.base), e.ablationCell(w, a.config()), change)
		}
	}
	b.WriteString("\n")
	for _, a := range used {
		fmt.Fprintf(&b, "- **-%s** (%s against %s: %s): %s\n", a.id, a.config(), a.base, a.off, upperFirst(a.does))
	}
	return b.String()
}

func upperFirst(s string) string {
	if s == "" || s[0] < 'a' || s[0] > 'z' {
		return s
	}
	return string(s[0]-'a'+'A') + s[1:]
}

// ablationMethod is the method paragraph of the ablation.
func (e *env) ablationMethod() string {
	return fmt.Sprintf("Ablation (--ablate): each ablation configuration is the default %s (%s for -passthrough) with exactly one tuning turned off (fs.Options.Tuning, fs.Options.ReadAheadKB), in an fs.Mount of its own (the options are mount-wide) with a quota ledger of its own whose folder scope has the same %s limit, showing the same backing folder. It runs only the workloads the tuning can affect, interleaved with the other configurations in the same runs; a row compares its median with the default column's. Change: the speed with the tuning over the speed without, minus one (for times, the time without over the time with, minus one); positive means the tuning helps.",
		cfgVfolderRW, cfgVfolderRO, humanBytes(vfQuotaBytes))
}

// ablationCell is a median, or why there is none.
func (e *env) ablationCell(w workload, cfg string) string {
	s, _, _ := e.medianText(w, cfg)
	return s
}
