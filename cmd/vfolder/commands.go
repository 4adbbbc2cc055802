package main

import (
	"bufio"
	"fmt"
	"strconv"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/vfolder/vfolder/api"
	"github.com/vfolder/vfolder/internal/units"
	"github.com/vfolder/vfolder/meta"
)

func ownerFlags(what string) []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "user", Aliases: []string{"u"}, Usage: what + " the user with this UUID", Category: "owner"},
		&cli.StringFlag{Name: "project", Aliases: []string{"p"}, Usage: what + " the project with this UUID", Category: "owner"},
	}
}

// ownerOf reads --user/--project. given is false when neither is set.
func ownerOf(c *cli.Context) (owner meta.ScopeID, given bool, err error) {
	u, p := c.String("user"), c.String("project")
	switch {
	case u != "" && p != "":
		return meta.ScopeID{}, false, usagef(c, "give --user or --project, not both")
	case u != "":
		owner, err = meta.UserScope(u)
		if err != nil {
			return meta.ScopeID{}, false, fmt.Errorf("--user %q is not a UUID", u)
		}
		return owner, true, nil
	case p != "":
		owner, err = meta.ProjectScope(p)
		if err != nil {
			return meta.ScopeID{}, false, fmt.Errorf("--project %q is not a UUID", p)
		}
		return owner, true, nil
	}
	return meta.ScopeID{}, false, nil
}

// needOwner is ownerOf where an owner is required.
func needOwner(c *cli.Context) (meta.ScopeID, error) {
	owner, given, err := ownerOf(c)
	if err == nil && !given {
		err = usagef(c, "%s needs the owner: --user UUID or --project UUID", commandPath(c))
	}
	return owner, err
}

// folderRef checks a folder reference: an id, or a name with an owner
// flag. The owner is the zero ScopeID when no owner flag is given.
func folderRef(c *cli.Context, ref string) (meta.ScopeID, error) {
	owner, given, err := ownerOf(c)
	if err != nil {
		return meta.ScopeID{}, err
	}
	if !given {
		if _, err := meta.ParseUUID(ref); err != nil {
			return meta.ScopeID{}, usagef(c, "%q is not a folder id; to refer to a folder by name, add --user UUID or --project UUID", ref)
		}
	}
	return owner, nil
}

// refArgs checks that a command has its n arguments, the first being REF,
// and reads REF with its owner.
func refArgs(c *cli.Context, n int) (string, meta.ScopeID, error) {
	if err := needArgs(c, n, n); err != nil {
		return "", meta.ScopeID{}, err
	}
	ref := c.Args().First()
	owner, err := folderRef(c, ref)
	return ref, owner, err
}

// permissionFlag reads a ro/rw/wd flag: "" when it is neither given nor
// has a default.
func permissionFlag(c *cli.Context, name string) (meta.Permission, error) {
	p := meta.Permission(c.String(name))
	if p == "" && !c.IsSet(name) {
		return "", nil
	}
	if !p.Valid() {
		return "", usagef(c, "--%s must be ro, rw or wd, not %q", name, p)
	}
	return p, nil
}

// sizeError is the message of a size that units.ParseLimit refused,
// introduced by what (a flag or argument).
func sizeError(what string, err error) error {
	return fmt.Errorf("%s: %s", what, strings.TrimPrefix(err.Error(), units.ErrInvalidSize.Error()+": "))
}

const refHelp = "REF is a folder id, or a folder name together with --user UUID or --project UUID."

func commands(st *state) []*cli.Command {
	volumeList := &cli.Command{
		Name:    "list",
		Aliases: []string{"ls"},
		Usage:   "list the storage volumes (hosts) vfolderd serves",
		Action:  st.volumeList,
	}
	return append([]*cli.Command{
		{
			Name:        "volume",
			Usage:       "storage volumes",
			Subcommands: []*cli.Command{volumeList, volumeImportCommand(st)},
		},
		{
			Name:   "list-hosts",
			Usage:  "list the storage volumes (same as 'volume list')",
			Action: st.volumeList,
		},
		{
			Name:      "create",
			Usage:     "create a folder on a volume",
			ArgsUsage: "NAME HOST",
			Description: "Creates folder NAME on volume HOST, owned by a user or a project.\n" +
				"Names are up to 64 characters, unique per owner across volumes; '/', '.', '..' and reserved dot-names are refused.",
			Flags: append(ownerFlags("owned by"),
				&cli.StringFlag{Name: "mode", Usage: "usage mode: general, model or data", Value: "general"},
				&cli.StringFlag{Name: "permission", Usage: "permission the owner (or project members) get: ro, rw or wd", Value: "rw"},
				&cli.BoolFlag{Name: "cloneable", Usage: "allow cloning (model folders)"},
				&cli.StringFlag{Name: "id", Usage: "adopt this folder id (a UUID) instead of a new one; it must be free and have no directory on the volume yet"},
			),
			Action: st.create,
		},
		{
			Name:  "list",
			Usage: "list folders",
			Description: "With --user U (and neither --all nor --trash): every folder U can reach, owned,\n" +
				"of U's projects or shared with U, with how (VIA) and U's permission there (PERM).",
			Flags: append(ownerFlags("only folders of"),
				&cli.StringFlag{Name: "volume", Aliases: []string{"host"}, Usage: "only folders on this volume"},
				&cli.BoolFlag{Name: "all", Aliases: []string{"a"}, Usage: "include folders in the trash"},
				&cli.BoolFlag{Name: "trash", Usage: "only folders in the trash"},
			),
			Action: st.list,
		},
		{
			Name:        "info",
			Usage:       "show a folder",
			ArgsUsage:   "REF",
			Description: refHelp,
			Flags:       ownerFlags("a folder name of"),
			Action:      st.info,
		},
		{
			Name:        "rename",
			Usage:       "rename a folder",
			ArgsUsage:   "REF NEWNAME",
			Description: refHelp,
			Flags:       ownerFlags("a folder name of"),
			Action:      st.rename,
		},
		{
			Name:        "delete",
			Aliases:     []string{"trash"},
			Usage:       "move a folder to the trash (it can be restored until it is purged)",
			ArgsUsage:   "REF",
			Description: refHelp,
			Flags:       ownerFlags("a folder name of"),
			Action:      st.trash,
		},
		{
			Name:        "restore",
			Usage:       "bring a folder back from the trash",
			ArgsUsage:   "REF",
			Description: refHelp,
			Flags:       ownerFlags("a folder name of"),
			Action:      st.restore,
		},
		{
			Name:      "purge",
			Usage:     "delete a trashed folder and its files permanently",
			ArgsUsage: "REF",
			Description: refHelp + "\nThe folder must be in the trash. --confirm must be its exact name; without it,\n" +
				"an interactive terminal is asked to type the name. The removal runs in the background\n" +
				"(status delete-ongoing, progress in 'vfolder info'); --wait waits for its end.",
			Flags: append(ownerFlags("a folder name of"),
				&cli.StringFlag{Name: "confirm", Usage: "the folder's exact name"},
				&cli.BoolFlag{Name: "wait", Usage: "wait until the folder is gone, showing the progress"},
			),
			Action: st.purge,
		},
		{
			Name:        "usage",
			Usage:       "show how much a folder stores",
			ArgsUsage:   "REF",
			Description: refHelp,
			Flags:       ownerFlags("a folder name of"),
			Action:      st.usage,
		},
		{
			Name:    "quota-scope",
			Aliases: []string{"qs"},
			Usage:   "per-user and per-project quota on a volume",
			Description: "ID is a UUID with -t user|project, or written as user:<uuid> / project:<uuid>.\n" +
				units.UnitHelp + ". \"unlimited\" or 0 removes the limit.",
			Subcommands: []*cli.Command{
				{
					Name:      "get",
					Usage:     "show a scope's limit, usage, free space and percentage",
					ArgsUsage: "HOST ID",
					Flags:     []cli.Flag{scopeTypeFlag()},
					Action:    st.quotaGet,
				},
				{
					Name:      "set",
					Usage:     "set a scope's byte limit (and inode limit)",
					ArgsUsage: "HOST ID [LIMIT]",
					Flags: []cli.Flag{scopeTypeFlag(),
						&cli.StringFlag{Name: "inodes", Usage: "inode limit (a count; 0 or unlimited removes it)"}},
					Action: st.quotaSet,
				},
				{
					Name:      "unset",
					Usage:     "remove a scope's byte limit",
					ArgsUsage: "HOST ID",
					Flags:     []cli.Flag{scopeTypeFlag()},
					Action:    st.quotaUnset,
				},
				{
					Name:      "check",
					Usage:     "compare a scope's usage with what is on storage (and fix it with --repair)",
					ArgsUsage: "HOST ID",
					Description: "Walks every folder of the scope on the volume and compares each object with the\n" +
						"daemon's usage ledger: files written on the volume behind the daemon's back, entries\n" +
						"whose file is gone, wrong sizes. --repair makes the ledger match the volume. Writes\n" +
						"go on during the check. Big folders take a while: the request waits up to\n" +
						"24h unless --timeout says otherwise; the daemon logs progress.\n" +
						"Exit status: 0 no difference (or every one repaired), 1 differences left, or the\n" +
						"check could not read everything.",
					Flags: []cli.Flag{scopeTypeFlag(),
						&cli.BoolFlag{Name: "repair", Usage: "make the ledger match what is on storage"}},
					Action: st.quotaCheck,
				},
			},
		},
		{
			Name:  "policy",
			Usage: "resource policy of a user or project",
			Subcommands: []*cli.Command{
				{
					Name:   "get",
					Usage:  "show a policy",
					Flags:  ownerFlags("the policy of"),
					Action: st.policyGet,
				},
				{
					Name:  "set",
					Usage: "change a policy (unset fields stay as they are)",
					Flags: append(ownerFlags("the policy of"),
						&cli.StringFlag{Name: "max-folders", Usage: "how many folders the owner may have (0 or unlimited: no limit)"},
						&cli.StringFlag{Name: "max-quota-scope-size", Usage: "initial limit of the owner's new quota scopes (SIZE; 0 or unlimited: none)"},
						volumePermsFlag(), allVolumesFlag(),
					),
					Description: volumePermsHelp,
					Action:      st.policySet,
				},
			},
		},
		viewCommand(st),
		updateOptionsCommand(st),
		memberCommand(st),
		mountCommand(st),
		nodeCommand(st),
		cloneCommand(st),
		sshkeyCommand(st),
	}, append(sharingCommands(st), fileCommands(st)...)...)
}

func scopeTypeFlag() cli.Flag {
	return &cli.StringFlag{Name: "type", Aliases: []string{"t"}, Usage: "kind of ID: user or project"}
}

// output prints v as JSON with --json, else calls text.
func (st *state) output(v any, text func() error) error {
	if st.json {
		return printJSON(st.stdout, v)
	}
	return text()
}

// outputLine prints v as JSON with --json, else one line of text.
func (st *state) outputLine(v any, format string, args ...any) error {
	return st.output(v, func() error {
		_, err := fmt.Fprintf(st.stdout, format+"\n", args...)
		return err
	})
}

// outputList prints a list as JSON (an empty one as []) with --json, else
// as a table of header and rows(items).
func outputList[T any](st *state, items []T, header []string, rows func([]T) [][]string) error {
	if items == nil {
		items = []T{}
	}
	return st.output(items, func() error { return printTable(st.stdout, header, rows(items)) })
}

func (st *state) volumeList(c *cli.Context) error {
	if err := needArgs(c, 0, 0); err != nil {
		return err
	}
	vs, err := st.client.Volumes(ctxOf(c))
	if err != nil {
		return err
	}
	return outputList(st, vs, volumeHeader, volumeRows)
}

func (st *state) create(c *cli.Context) error {
	if err := needArgs(c, 2, 2); err != nil {
		return err
	}
	owner, err := needOwner(c)
	if err != nil {
		return err
	}
	mode := meta.UsageMode(c.String("mode"))
	if !mode.Valid() {
		return usagef(c, "--mode must be general, model or data, not %q", mode)
	}
	perm, err := permissionFlag(c, "permission")
	if err != nil {
		return err
	}
	f, err := st.client.CreateFolder(ctxOf(c), api.CreateFolderRequest{
		Name: c.Args().Get(0), Volume: c.Args().Get(1), Owner: owner,
		UsageMode: mode, Permission: perm, Cloneable: c.Bool("cloneable"), ID: c.String("id"),
	})
	if err != nil {
		return err
	}
	return st.output(f, func() error {
		fmt.Fprintf(st.stdout, "Created folder %q.\n", f.Name)
		return printKV(st.stdout, folderKV(f))
	})
}

func (st *state) list(c *cli.Context) error {
	if err := needArgs(c, 0, 0); err != nil {
		return err
	}
	owner, _, err := ownerOf(c)
	if err != nil {
		return err
	}
	opt := api.ListFoldersOptions{Owner: owner, Volume: c.String("volume")}
	switch {
	case c.Bool("all") && c.Bool("trash"):
		return usagef(c, "give --all or --trash, not both")
	case owner.Kind == meta.KindUser && !c.Bool("all") && !c.Bool("trash"):
		return st.listReach(c, owner.UUID, opt.Volume)
	case c.Bool("all"):
		opt.Deleted = api.DeletedInclude
	case c.Bool("trash"):
		opt.Deleted = api.DeletedOnly
	}
	fs, err := st.client.ListFolders(ctxOf(c), opt)
	if err != nil {
		return err
	}
	return outputList(st, fs, folderHeader, folderRows)
}

func (st *state) info(c *cli.Context) error {
	ref, owner, err := refArgs(c, 1)
	if err != nil {
		return err
	}
	f, err := st.client.Folder(ctxOf(c), ref, owner)
	if err != nil {
		return err
	}
	return st.output(f, func() error { return printKV(st.stdout, folderKV(f)) })
}

func (st *state) rename(c *cli.Context) error {
	ref, owner, err := refArgs(c, 2)
	if err != nil {
		return err
	}
	f, err := st.client.RenameFolder(ctxOf(c), ref, owner, c.Args().Get(1))
	if err != nil {
		return err
	}
	return st.outputLine(f, "Renamed folder %s to %q.", f.ID, f.Name)
}

func (st *state) trash(c *cli.Context) error {
	ref, owner, err := refArgs(c, 1)
	if err != nil {
		return err
	}
	f, err := st.client.TrashFolder(ctxOf(c), ref, owner)
	if err != nil {
		return err
	}
	return st.outputLine(f, "Moved folder %q (%s) to the trash. It can be restored with 'vfolder restore %s' until it is purged.", f.Name, f.ID, f.ID)
}

func (st *state) restore(c *cli.Context) error {
	ref, owner, err := refArgs(c, 1)
	if err != nil {
		return err
	}
	f, err := st.client.RestoreFolder(ctxOf(c), ref, owner)
	if err != nil {
		return err
	}
	return st.outputLine(f, "Restored folder %q (%s); its status is %s.", f.Name, f.ID, f.Status)
}

func (st *state) purge(c *cli.Context) error {
	ref, owner, err := refArgs(c, 1)
	if err != nil {
		return err
	}
	confirm := c.String("confirm")
	if !c.IsSet("confirm") {
		if !st.isTerminal() {
			return usagef(c, "purge needs --confirm NAME (the folder's exact name) when not run from a terminal")
		}
		f, err := st.client.Folder(ctxOf(c), ref, owner)
		if err != nil {
			return err
		}
		fmt.Fprintf(st.stderr, "Purging folder %q (%s) deletes its files permanently.\nType the folder name to confirm: ", f.Name, f.ID)
		line, err := bufio.NewReader(st.stdin).ReadString('\n')
		if err != nil && line == "" {
			fmt.Fprintln(st.stderr)
			return fmt.Errorf("no confirmation given; nothing was purged")
		}
		confirm = strings.TrimRight(line, "\r\n")
	}
	f, err := st.client.PurgeFolder(ctxOf(c), ref, owner, confirm)
	if err != nil {
		return err
	}
	if c.Bool("wait") {
		return st.waitPurge(c, f)
	}
	return st.outputLine(f, "Purging folder %q (%s) in the background (status %s); 'vfolder info %s' shows the progress.", f.Name, f.ID, f.Status, f.ID)
}

func (st *state) usage(c *cli.Context) error {
	ref, owner, err := refArgs(c, 1)
	if err != nil {
		return err
	}
	u, err := st.client.FolderUsage(ctxOf(c), ref, owner)
	if err != nil {
		return err
	}
	return st.output(u, func() error {
		return printKV(st.stdout, []kv{
			{"folder", u.FolderID},
			{"used", sizeWithBytes(u.UsedBytes)},
			{"inodes", fmt.Sprint(u.UsedInodes)},
			{"as of", fmtTime(u.AsOf)},
		})
	})
}

// scopeArgs reads HOST and ID (with -t) of the quota-scope commands.
func scopeArgs(c *cli.Context, min, max int) (string, meta.ScopeID, error) {
	if err := needArgs(c, min, max); err != nil {
		return "", meta.ScopeID{}, err
	}
	host, raw := c.Args().Get(0), c.Args().Get(1)
	typ := c.String("type")
	if typ != "" && typ != string(meta.KindUser) && typ != string(meta.KindProject) {
		return "", meta.ScopeID{}, usagef(c, "-t must be user or project, not %q", typ)
	}
	if kind, _, ok := strings.Cut(raw, ":"); ok {
		id, err := meta.ParseScopeID(raw)
		if err != nil {
			return "", meta.ScopeID{}, fmt.Errorf("%q is not a quota scope id: write user:<uuid> or project:<uuid>", raw)
		}
		if typ != "" && typ != kind {
			return "", meta.ScopeID{}, usagef(c, "-t %s contradicts the scope id %q", typ, raw)
		}
		return host, id, nil
	}
	if typ == "" {
		return "", meta.ScopeID{}, usagef(c, "say what %q is: add -t user or -t project, or write it as user:<uuid>", raw)
	}
	id, err := meta.NewScopeID(meta.OwnerKind(typ), raw)
	if err != nil {
		return "", meta.ScopeID{}, fmt.Errorf("%q is not a UUID", raw)
	}
	return host, id, nil
}

func (st *state) printScope(s api.QuotaScope) error {
	return st.output(s, func() error { return printKV(st.stdout, scopeKV(s)) })
}

func (st *state) quotaGet(c *cli.Context) error {
	host, id, err := scopeArgs(c, 2, 2)
	if err != nil {
		return err
	}
	s, err := st.client.QuotaScope(ctxOf(c), host, id)
	if err != nil {
		return err
	}
	return st.printScope(s)
}

// parseCount parses a count limit: a non-negative integer, or
// "unlimited"/"none" for 0.
func parseCount(flag, s string) (int64, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "unlimited", "none":
		return 0, nil
	}
	n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("--%s %q is not a count: give a whole number >= 0 or \"unlimited\"", flag, s)
	}
	return n, nil
}

func (st *state) quotaSet(c *cli.Context) error {
	host, id, err := scopeArgs(c, 2, 3)
	if err != nil {
		return err
	}
	var req api.SetQuotaRequest
	if c.NArg() == 3 {
		n, err := units.ParseLimit(c.Args().Get(2))
		if err != nil {
			return sizeError("limit", err)
		}
		req.LimitBytes = &n
	}
	if c.IsSet("inodes") {
		n, err := parseCount("inodes", c.String("inodes"))
		if err != nil {
			return err
		}
		req.LimitInodes = &n
	}
	if req.LimitBytes == nil && req.LimitInodes == nil {
		return usagef(c, "quota-scope set needs a LIMIT, --inodes N, or both")
	}
	s, err := st.client.SetQuotaScope(ctxOf(c), host, id, req)
	if err != nil {
		return err
	}
	return st.printScope(s)
}

func (st *state) quotaUnset(c *cli.Context) error {
	host, id, err := scopeArgs(c, 2, 2)
	if err != nil {
		return err
	}
	s, err := st.client.UnsetQuotaScope(ctxOf(c), host, id)
	if err != nil {
		return err
	}
	return st.printScope(s)
}

func (st *state) quotaCheck(c *cli.Context) error {
	host, id, err := scopeArgs(c, 2, 2)
	if err != nil {
		return err
	}
	if !c.IsSet("timeout") { // a check waits longer unless told otherwise
		st.client.Timeout = api.CheckTimeout
	}
	repair := c.Bool("repair")
	rep, err := st.client.CheckQuotaScope(ctxOf(c), host, id, api.QuotaCheckRequest{Repair: repair})
	if err != nil {
		return err
	}
	if err := st.output(rep, func() error { return printCheck(st.stdout, rep) }); err != nil {
		return err
	}
	switch {
	case rep.Drift && !rep.Repaired && repair:
		return fmt.Errorf("%d difference(s) between the ledger of %s on %s and storage could not be repaired (see the log of vfolderd); run the check again", driftCount(rep)-rep.RepairedCount, id, host)
	case rep.Drift && !rep.Repaired:
		return fmt.Errorf("the ledger of %s on %s differs from storage (%d difference(s)); run 'vfolder quota-scope check %s %s --repair' to fix it", id, host, driftCount(rep), host, id)
	case !rep.Complete:
		return fmt.Errorf("the check of %s on %s could not read everything (see the folders' errors); entries there were not judged", id, host)
	}
	return nil
}

// driftCount is the number of differences a check found.
func driftCount(r api.QuotaCheck) int {
	n := 0
	for p, c := range r.Counts {
		if p != api.ProblemChanged {
			n += c
		}
	}
	return n
}

func (st *state) policyGet(c *cli.Context) error {
	if err := needArgs(c, 0, 0); err != nil {
		return err
	}
	owner, err := needOwner(c)
	if err != nil {
		return err
	}
	p, err := st.client.Policy(ctxOf(c), owner)
	if err != nil {
		return err
	}
	return st.output(p, func() error { return printKV(st.stdout, policyKV(owner.String(), p)) })
}

func (st *state) policySet(c *cli.Context) error {
	if err := needArgs(c, 0, 0); err != nil {
		return err
	}
	owner, err := needOwner(c)
	if err != nil {
		return err
	}
	if !c.IsSet("max-folders") && !c.IsSet("max-quota-scope-size") && !volumePermsSet(c) {
		return usagef(c, "policy set needs --max-folders N, --max-quota-scope-size SIZE, --volume-perms VOL=PERM,... or --all-volumes")
	}
	perms, err := volumePermsOf(c)
	if err != nil {
		return err
	}
	var maxFolders, maxSize int64
	if c.IsSet("max-folders") {
		if maxFolders, err = parseCount("max-folders", c.String("max-folders")); err != nil {
			return err
		}
		if maxFolders > int64(^uint32(0)>>1) {
			return fmt.Errorf("--max-folders %d is too large", maxFolders)
		}
	}
	if c.IsSet("max-quota-scope-size") {
		if maxSize, err = units.ParseLimit(c.String("max-quota-scope-size")); err != nil {
			return sizeError("--max-quota-scope-size", err)
		}
	}
	p, err := st.client.Policy(ctxOf(c), owner)
	if err != nil {
		return err
	}
	if c.IsSet("max-folders") {
		p.MaxFolderCount = int(maxFolders)
	}
	if c.IsSet("max-quota-scope-size") {
		p.MaxQuotaScopeSize = maxSize
	}
	p = perms.apply(p)
	p, err = st.client.SetPolicy(ctxOf(c), owner, p)
	if err != nil {
		return err
	}
	return st.output(p, func() error { return printKV(st.stdout, policyKV(owner.String(), p)) })
}
