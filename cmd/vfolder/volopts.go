package main

// Verbs of folder options, volume capacity, volume permissions and
// volume import: update-options, volume import, and the --volume-perms /
// --all-volumes flags of policy set.

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/vfolder/vfolder/api"
	"github.com/vfolder/vfolder/internal/units"
	"github.com/vfolder/vfolder/meta"
)

// Volume permission names (the daemon's; it refuses unknown ones too).
var volumePermNames = []string{"create-vfolder", "mount-in-session", "upload-file", "download-file", "invite-others", "clone"}

const volumePermsHelp = `Volume permissions (the reference system's allowed_vfolder_hosts) say what the owner
may do on each volume: ` + "create-vfolder, mount-in-session, upload-file, download-file, invite-others, clone" + `.
An owner whose policy names no volume permissions may do everything everywhere. Once any
is set, a volume the policy does not name allows nothing.

  --volume-perms VOL=PERM,PERM...   set what the owner may do on VOL (repeat per volume;
                                    VOL= or VOL=none allows nothing there, VOL=all everything)
  --all-volumes                     drop the volume permissions: everything allowed again`

func volumePermsFlag() cli.Flag {
	return &cli.StringSliceFlag{Name: "volume-perms", Usage: "what the owner may do on a volume: VOL=PERM,PERM... (repeatable; see below)"}
}

func allVolumesFlag() cli.Flag {
	return &cli.BoolFlag{Name: "all-volumes", Usage: "drop every volume permission: the owner may do everything on every volume"}
}

func volumePermsSet(c *cli.Context) bool { return c.IsSet("volume-perms") || c.Bool("all-volumes") }

// volumePermsChange is what --volume-perms and --all-volumes ask for.
type volumePermsChange struct {
	reset bool                // --all-volumes
	set   map[string][]string // volume -> permissions (replacing that volume's)
}

// apply returns p with the change made (p is not modified).
func (ch volumePermsChange) apply(p api.Policy) api.Policy {
	p = p.Clone()
	if ch.reset {
		p.Volumes = nil
	}
	if len(ch.set) == 0 {
		return p
	}
	if p.Volumes == nil {
		p.Volumes = map[string][]string{}
	}
	for vol, perms := range ch.set {
		p.Volumes[vol] = perms
	}
	return p
}

// volumePermsOf parses --volume-perms and --all-volumes. urfave splits a
// slice flag's value at commas, so "v1=create-vfolder,mount-in-session"
// arrives as two items: an item without '=' continues the volume before.
func volumePermsOf(c *cli.Context) (volumePermsChange, error) {
	ch := volumePermsChange{reset: c.Bool("all-volumes"), set: map[string][]string{}}
	if ch.reset && c.IsSet("volume-perms") {
		return ch, usagef(c, "give --volume-perms or --all-volumes, not both")
	}
	cur := ""
	for _, item := range c.StringSlice("volume-perms") {
		item = strings.TrimSpace(item)
		vol, perm, hasVol := strings.Cut(item, "=")
		if hasVol {
			vol = strings.TrimSpace(vol)
			if vol == "" {
				return ch, usagef(c, "--volume-perms %q: the volume name is empty (write VOL=PERM,...)", item)
			}
			if _, dup := ch.set[vol]; dup {
				return ch, usagef(c, "--volume-perms names volume %q twice", vol)
			}
			cur = vol
			ch.set[vol] = []string{}
		} else {
			if cur == "" {
				return ch, usagef(c, "--volume-perms %q: write VOL=PERM,PERM...", item)
			}
			perm = vol
		}
		switch perm = strings.TrimSpace(perm); perm {
		case "", "none":
			continue
		case "all":
			ch.set[cur] = append(ch.set[cur], volumePermNames...)
			continue
		}
		known := false
		for _, n := range volumePermNames {
			known = known || n == perm
		}
		if !known {
			return ch, usagef(c, "--volume-perms: %q is not a volume permission (want %s, all or none)", perm, strings.Join(volumePermNames, ", "))
		}
		ch.set[cur] = append(ch.set[cur], perm)
	}
	return ch, nil
}

// volumePermsText shows a policy's volume permissions.
func volumePermsText(p api.Policy) string {
	if p.Volumes == nil {
		return "all (every volume)"
	}
	if len(p.Volumes) == 0 {
		return "none (no volume)"
	}
	vols := make([]string, 0, len(p.Volumes))
	for v := range p.Volumes {
		vols = append(vols, v)
	}
	sort.Strings(vols)
	parts := make([]string, 0, len(vols))
	for _, v := range vols {
		perms := strings.Join(p.Volumes[v], ",")
		if perms == "" {
			perms = "none"
		}
		parts = append(parts, v+"="+perms)
	}
	return strings.Join(parts, " ") + " (other volumes: none)"
}

// spaceCells are the SIZE, USED, FREE and INODES-FREE cells of a volume.
func spaceCells(sp *api.VolumeSpace) []string {
	switch {
	case sp == nil:
		return []string{"-", "-", "-", "-"}
	case sp.SpaceError != "":
		return []string{"?", "?", "?", "?"}
	}
	inodes := "-"
	if sp.CapacityInodes > 0 {
		inodes = fmt.Sprint(sp.FreeInodes)
	}
	return []string{units.FormatSize(sp.CapacityBytes), units.FormatSize(sp.UsedBytes), units.FormatSize(sp.FreeBytes), inodes}
}

func updateOptionsCommand(st *state) *cli.Command {
	return &cli.Command{
		Name:      "update-options",
		Usage:     "change a folder's permission, cloneable flag or usage mode",
		ArgsUsage: "REF",
		Description: refHelp + "\nOnly a live folder (not in the trash) can change. The owner's views (users/, projects/)\n" +
			"follow at once and new publishes are capped by the new permission; sessions published\n" +
			"before keep the mode they were given until they are unpublished.",
		Flags: append(ownerFlags("a folder name of"),
			&cli.StringFlag{Name: "perm", Aliases: []string{"permission"}, Usage: "permission the owner (or project members) get: ro, rw or wd"},
			&cli.StringFlag{Name: "cloneable", Usage: "allow cloning: true or false (model folders only)"},
			&cli.StringFlag{Name: "usage-mode", Aliases: []string{"mode"}, Usage: "usage mode: general, model or data"},
		),
		Action: st.updateOptions,
	}
}

func (st *state) updateOptions(c *cli.Context) error {
	ref, owner, err := refArgs(c, 1)
	if err != nil {
		return err
	}
	var req api.UpdateOptionsRequest
	if c.IsSet("perm") {
		p, err := permissionFlag(c, "perm")
		if err != nil {
			return err
		}
		req.Permission = &p
	}
	if c.IsSet("cloneable") {
		var b bool
		switch strings.ToLower(c.String("cloneable")) {
		case "true", "yes", "1":
			b = true
		case "false", "no", "0":
		default:
			return usagef(c, "--cloneable must be true or false, not %q", c.String("cloneable"))
		}
		req.Cloneable = &b
	}
	if c.IsSet("usage-mode") {
		m := meta.UsageMode(c.String("usage-mode"))
		if !m.Valid() {
			return usagef(c, "--usage-mode must be general, model or data, not %q", m)
		}
		req.UsageMode = &m
	}
	if req.Permission == nil && req.Cloneable == nil && req.UsageMode == nil {
		return usagef(c, "update-options needs --perm, --cloneable or --usage-mode")
	}
	f, err := st.client.UpdateOptions(ctxOf(c), ref, owner, req)
	if err != nil {
		return err
	}
	return st.output(f, func() error {
		fmt.Fprintf(st.stdout, "Updated the options of folder %q.\n", f.Name)
		return printKV(st.stdout, folderKV(f))
	})
}

const importHelp = `Registers every folder already on the layout-v3 volume HOST
(<volume>/<owner-uuid-hex>/<id[0:2]>/<id[2:4]>/<id[4:]>): the id comes from the path,
the owner's UUID from the scope directory. Storage is never written.

The names file (--names FILE, "-" for stdin) has one line per folder:
    <folder-id> <name> [user|project]
blank lines and lines starting with # are skipped; the id may be dashed; the name is
one word (no spaces). A folder the file does not name is called by its id.

The owner kind (user or project) is not on the volume: it comes from the file's third
column, else from what the daemon already knows of that UUID (a quota scope on the
volume, folders on any volume, project memberships), else from --owner-kind. A folder whose owner kind none of these
gives is refused.

Anything the import does not understand (a stray file or symlink, a name that is not
lowercase hex of the right length, an id registered elsewhere, a name the owner uses
already) is listed and nothing is registered. Then the usage of each owner's folders is
counted by one walk (a quota check with repair); the daemon logs its progress. A rerun
skips what is registered and changes nothing. --dry-run only checks and lists.`

func volumeImportCommand(st *state) *cli.Command {
	return &cli.Command{
		Name:        "import",
		Usage:       "register the folders already on a layout-v3 volume",
		ArgsUsage:   "HOST",
		Description: importHelp,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "names", Usage: "file of '<folder-id> <name> [user|project]' lines (- for stdin)"},
			&cli.StringFlag{Name: "owner-kind", Usage: "kind of the owners the names file and the daemon do not know: user or project"},
			&cli.BoolFlag{Name: "dry-run", Usage: "check and list, register nothing"},
		},
		Action: st.volumeImport,
	}
}

// parseNames reads an import names file (see importHelp).
func parseNames(r io.Reader, what string) ([]api.ImportName, error) {
	var out []api.ImportName
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		if len(f) < 2 || len(f) > 3 {
			return nil, fmt.Errorf("%s line %d: want '<folder-id> <name> [user|project]', got %q", what, n, line)
		}
		id, err := meta.ParseUUID(f[0])
		if err != nil {
			return nil, fmt.Errorf("%s line %d: %q is not a folder id", what, n, f[0])
		}
		e := api.ImportName{FolderID: id, Name: f[1]}
		if len(f) == 3 {
			if f[2] != api.OwnerKindUser && f[2] != api.OwnerKindProject {
				return nil, fmt.Errorf("%s line %d: owner kind %q is none of user, project", what, n, f[2])
			}
			e.OwnerKind = f[2]
		}
		out = append(out, e)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	return out, nil
}

func (st *state) volumeImport(c *cli.Context) error {
	if err := needArgs(c, 1, 1); err != nil {
		return err
	}
	req := api.ImportRequest{OwnerKind: c.String("owner-kind"), DryRun: c.Bool("dry-run")}
	switch req.OwnerKind {
	case "", api.OwnerKindUser, api.OwnerKindProject:
	default:
		return usagef(c, "--owner-kind must be user or project, not %q", req.OwnerKind)
	}
	if name := c.String("names"); name != "" {
		var r io.Reader = st.stdin
		what := "names (stdin)"
		if name != "-" {
			f, err := os.Open(name)
			if err != nil {
				return fmt.Errorf("names file: %w", err)
			}
			defer f.Close()
			r, what = f, "names file "+name
		}
		names, err := parseNames(r, what)
		if err != nil {
			return err
		}
		req.Names = names
	}
	if !c.IsSet("timeout") { // an import walks folders: it waits longer unless told otherwise
		st.client.Timeout = api.CheckTimeout
	}
	host := c.Args().First()
	var stop func()
	if !st.json {
		fmt.Fprintf(st.stderr, "Importing the folders of volume %s...\n", host)
		stop = st.showImportProgress(c, host)
	}
	rep, err := st.client.ImportVolume(ctxOf(c), host, req)
	if stop != nil {
		stop()
	}
	if err != nil {
		return err
	}
	return st.output(rep, func() error { return printImport(st.stdout, rep) })
}

// importPollEvery is how often the CLI asks for an import's progress.
var importPollEvery = time.Second

// showImportProgress prints the progress of the import of host to stderr,
// one line whenever it changed, until the returned stop is called.
func (st *state) showImportProgress(c *cli.Context, host string) (stop func()) {
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		tick := time.NewTicker(importPollEvery)
		defer tick.Stop()
		last := ""
		for {
			select {
			case <-done:
				return
			case <-tick.C:
			}
			ctx, cancel := context.WithTimeout(ctxOf(c), 5*time.Second)
			p, err := st.client.ImportProgress(ctx, host)
			cancel()
			if err != nil || !p.Running {
				continue
			}
			line := importProgressLine(p)
			if line != last {
				fmt.Fprintln(st.stderr, line)
				last = line
			}
		}
	}()
	return func() {
		close(done)
		<-finished
	}
}

// importProgressLine renders an import's progress.
func importProgressLine(p api.ImportProgress) string {
	switch p.Phase {
	case api.ImportReading:
		return "  reading the volume's layout"
	case api.ImportRegister:
		return fmt.Sprintf("  registered %d of %d folder(s)", p.Registered, p.Folders)
	case api.ImportCounting:
		return fmt.Sprintf("  counting usage: scope %d of %d (%s): %s so far", p.Counted+1, p.Scopes, p.Scope, units.FormatSize(p.ScopeBytes))
	}
	return "  " + p.Phase
}

func printImport(w io.Writer, rep api.ImportReport) error {
	rows := make([][]string, 0, len(rep.Imported)+len(rep.Skipped))
	state := "imported"
	if rep.DryRun {
		state = "would import"
	}
	for _, f := range rep.Imported {
		rows = append(rows, []string{f.ID, f.Name, f.Owner.String(), units.FormatSize(f.UsedBytes), fmt.Sprint(f.UsedInodes), state})
	}
	for _, f := range rep.Skipped {
		rows = append(rows, []string{f.ID, f.Name, f.Owner.String(), units.FormatSize(f.UsedBytes), fmt.Sprint(f.UsedInodes), "registered already"})
	}
	if err := printTable(w, []string{"ID", "NAME", "OWNER", "USED", "INODES", "STATE"}, rows); err != nil {
		return err
	}
	verb := "Imported"
	if rep.DryRun {
		verb = "Would import"
	}
	_, err := fmt.Fprintf(w, "%s %d folder(s) on volume %s; %d registered already; usage counted in %d quota scope(s).\n",
		verb, len(rep.Imported), rep.Volume, len(rep.Skipped), len(rep.Checks))
	return err
}
