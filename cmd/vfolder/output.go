package main

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/vfolder/vfolder/api"
	"github.com/vfolder/vfolder/internal/units"
	"github.com/vfolder/vfolder/meta"
)

// printJSON writes v as indented JSON.
func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// printTable writes an aligned table with a header row.
func printTable(w io.Writer, header []string, rows [][]string) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(header, "\t"))
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	return tw.Flush()
}

// kv is one line of a key/value block.
type kv struct{ k, v string }

// printKV writes "key:  value" lines with aligned values.
func printKV(w io.Writer, pairs []kv) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, p := range pairs {
		fmt.Fprintf(tw, "%s:\t%s\n", p.k, p.v)
	}
	return tw.Flush()
}

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Local().Format("2006-01-02 15:04:05")
}

// sizeWithBytes prints a size for humans with the exact byte count.
func sizeWithBytes(n int64) string {
	if n < 1024 {
		return units.FormatSize(n)
	}
	return fmt.Sprintf("%s (%d bytes)", units.FormatSize(n), n)
}

func limitText(n int64) string {
	if n == 0 {
		return "unlimited"
	}
	return sizeWithBytes(n)
}

func countLimitText(n int64) string {
	if n == 0 {
		return "unlimited"
	}
	return fmt.Sprint(n)
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func folderKV(f api.Folder) []kv {
	status := string(f.Status)
	if f.StatusReason != "" {
		status += " (" + f.StatusReason + ")"
	}
	kvs := []kv{
		{"id", f.ID},
		{"name", f.Name},
		{"owner", f.Owner.String()},
		{"volume", f.Volume},
		{"path", f.Path},
		{"usage mode", string(f.UsageMode)},
		{"permission", string(f.Permission)},
		{"cloneable", yesNo(f.Cloneable)},
		{"status", status},
		{"created", fmtTime(f.CreatedAt)},
		{"updated", fmtTime(f.UpdatedAt)},
	}
	if f.Progress != nil {
		kvs = append(kvs, kv{"progress", progressText(*f.Progress)})
	}
	return kvs
}

// folderRows renders folders as table rows, ordered by owner and name.
func folderRows(fs []api.Folder) [][]string {
	sorted := append([]api.Folder(nil), fs...)
	sort.SliceStable(sorted, func(i, j int) bool {
		a, b := sorted[i], sorted[j]
		if a.Owner.String() != b.Owner.String() {
			return a.Owner.String() < b.Owner.String()
		}
		return a.Name < b.Name
	})
	rows := make([][]string, 0, len(fs))
	for _, f := range sorted {
		cl := ""
		if f.Cloneable {
			cl = " (cloneable)"
		}
		rows = append(rows, []string{f.ID, f.Name, f.Owner.String(), f.Volume, string(f.UsageMode) + cl,
			string(f.Permission), string(f.Status), fmtTime(f.CreatedAt)})
	}
	return rows
}

var folderHeader = []string{"ID", "NAME", "OWNER", "VOLUME", "MODE", "PERM", "STATUS", "CREATED"}

func volumeRows(vs []api.Volume) [][]string {
	rows := make([][]string, 0, len(vs))
	for _, v := range vs {
		chown := v.Chown
		if chown == "" {
			chown = meta.ChownIgnore
		}
		status := v.Status
		if v.Reason != "" {
			status += ": " + v.Reason
		}
		row := []string{v.Name, v.Path}
		row = append(row, spaceCells(v.VolumeSpace)...) // volopts.go
		rows = append(rows, append(row, yesNo(v.MountAllowed), yesNo(v.CloneAllowed), yesNo(v.RWCanDelete), string(chown), status))
	}
	return rows
}

var volumeHeader = []string{"NAME", "PATH", "SIZE", "USED", "FREE", "INODES-FREE", "MOUNT", "CLONE", "RW-DELETES", "CHOWN", "STATUS"}

// scopeKV describes a quota scope: limit, used, free and percentage.
func scopeKV(s api.QuotaScope) []kv {
	free, pct := "unlimited", "-"
	if s.LimitBytes > 0 {
		f := s.LimitBytes - s.UsedBytes
		if f < 0 {
			f = 0
		}
		free = sizeWithBytes(f)
		pct = fmt.Sprintf("%.1f%%", float64(s.UsedBytes)*100/float64(s.LimitBytes))
	}
	inodes := fmt.Sprint(s.UsedInodes)
	if s.LimitInodes > 0 {
		inodes = fmt.Sprintf("%d of %d (%.1f%%)", s.UsedInodes, s.LimitInodes, float64(s.UsedInodes)*100/float64(s.LimitInodes))
	}
	out := []kv{
		{"volume", s.Volume},
		{"scope", s.ID.String()},
		{"limit", limitText(s.LimitBytes)},
		{"used", sizeWithBytes(s.UsedBytes)},
		{"free", free},
		{"used %", pct},
		{"inode limit", countLimitText(s.LimitInodes)},
		{"inodes used", inodes},
	}
	if s.Checking {
		out = append(out, kv{"check", "running (usage may still be corrected)"})
	}
	return out
}

func policyKV(owner string, p api.Policy) []kv {
	return []kv{
		{"owner", owner},
		{"max folders", countLimitText(int64(p.MaxFolderCount))},
		{"max quota scope size", limitText(p.MaxQuotaScopeSize)},
		{"volume permissions", volumePermsText(p)}, // volopts.go
	}
}

// checkFindingsShown bounds the findings printed as text (--json has all
// the daemon sent).
const checkFindingsShown = 50

// printCheck prints a quota check: one row per folder, a summary and the
// first findings.
func printCheck(w io.Writer, r api.QuotaCheck) error {
	rows := make([][]string, 0, len(r.Folders))
	for _, f := range r.Folders {
		state := "ok"
		switch {
		case !f.Complete:
			state = "incomplete"
		case f.Unknown+f.Missing+f.Other > 0:
			state = "drift"
		}
		rows = append(rows, []string{f.FolderID, f.Name,
			fmt.Sprint(f.LedgerBytes), fmt.Sprint(f.DiskBytes),
			fmt.Sprint(f.LedgerInodes), fmt.Sprint(f.DiskInodes),
			fmt.Sprint(f.Unknown), fmt.Sprint(f.Missing), fmt.Sprint(f.Other), state})
	}
	if err := printTable(w, []string{"FOLDER", "NAME", "LEDGER BYTES", "DISK BYTES", "LEDGER INODES", "DISK INODES", "UNKNOWN", "MISSING", "OTHER", "STATE"}, rows); err != nil {
		return err
	}
	for _, f := range r.Folders {
		for _, e := range f.Errors {
			fmt.Fprintf(w, "error in %s: %s\n", f.FolderID, e)
		}
	}
	fmt.Fprintln(w)
	other := 0
	for p, n := range r.Counts {
		switch p {
		case api.ProblemUnknown, api.ProblemGone, api.ProblemChanged:
		default:
			other += n
		}
	}
	repaired := "no"
	switch {
	case !r.Drift:
		repaired = "nothing to repair"
	case r.Repaired:
		repaired = fmt.Sprintf("yes (%d)", r.RepairedCount)
	case r.Repair:
		repaired = fmt.Sprintf("partly (%d)", r.RepairedCount)
	default:
		repaired = "no (run with --repair)"
	}
	var dirBytes, xattrBytes int64
	for _, f := range r.Folders {
		dirBytes += f.DiskDirBytes
		xattrBytes += f.DiskXattrBytes
	}
	pairs := []kv{
		{"volume", r.Volume},
		{"scope", r.Scope.String()},
		// Parts of the disk bytes above that are not file data.
		{"disk bytes in directories", fmt.Sprint(dirBytes)},
		{"disk bytes in user xattrs", fmt.Sprint(xattrBytes)},
		{"unknown files", fmt.Sprint(r.UnknownFiles)},
		{"missing entries", fmt.Sprint(r.MissingEntries)},
		{"other differences", fmt.Sprint(other)},
	}
	if len(r.OrphanFolders) > 0 {
		pairs = append(pairs, kv{"purged folders left", strings.Join(r.OrphanFolders, ", ")})
	}
	if r.Busy > 0 {
		pairs = append(pairs, kv{"busy (left for the next check)", fmt.Sprint(r.Busy)})
	}
	pairs = append(pairs,
		kv{"drift", yesNo(r.Drift)},
		kv{"repaired", repaired},
		kv{"complete", yesNo(r.Complete)},
		kv{"used now", sizeWithBytes(r.UsedBytes)},
		kv{"inodes now", fmt.Sprint(r.UsedInodes)},
		kv{"took", fmt.Sprintf("%.1fs", r.Seconds)},
	)
	if err := printKV(w, pairs); err != nil {
		return err
	}
	var shown [][]string
	for _, f := range r.Findings {
		if f.Problem == api.ProblemChanged {
			continue
		}
		if len(shown) == checkFindingsShown {
			break
		}
		path := f.Path
		if path == "" {
			path = "-"
		}
		shown = append(shown, []string{f.Problem, f.FolderID, path, fmt.Sprint(f.LedgerBytes), fmt.Sprint(f.DiskBytes), yesNo(f.Repaired)})
	}
	if len(shown) == 0 {
		return nil
	}
	fmt.Fprintln(w)
	if err := printTable(w, []string{"PROBLEM", "FOLDER", "PATH", "LEDGER BYTES", "DISK BYTES", "REPAIRED"}, shown); err != nil {
		return err
	}
	if n := driftCount(r); n > len(shown) {
		fmt.Fprintf(w, "(%d more; --json lists up to %d)\n", n-len(shown), api.MaxFindings)
	}
	return nil
}
