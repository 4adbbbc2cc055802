package main

// Sharing verbs: invitations of a user's folder to other users, per-folder
// permissions on project folders, and what a user can reach (list --user,
// status --user). See the README's "Sharing and invitations".

import (
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/vfolder/vfolder/api"
	"github.com/vfolder/vfolder/meta"
)

const sharingHelp = `A user's folder is offered to another user with 'invite'; once the invitee
accepts, it shows in their users/<uuid>/ view at the invited permission (never
above the owner's) and can be mounted into their sessions at no more; its bytes
stay charged to the owner. A project folder is shared with one member at a
permission of its own with 'share' (it beats the membership's default).
'unshare' (owner or admin) and 'leave' (invitee) take a folder away: the views
follow at once and publishes from then on; a running session keeps what it
has mounted until it is unpublished.`

func userFlag(usage string) *cli.StringFlag {
	return &cli.StringFlag{Name: "user", Aliases: []string{"u"}, Usage: usage}
}

// needUser reads a required --user UUID.
func needUser(c *cli.Context, what string) (string, error) {
	u := c.String("user")
	if u == "" {
		return "", usagef(c, "%s needs --user UUID (%s)", commandPath(c), what)
	}
	h, err := meta.ParseUUID(u)
	if err != nil {
		return "", fmt.Errorf("--user %q is not a UUID", u)
	}
	return h, nil
}

// folderOwnerFlags name a folder's owner for a REF given by name.
func folderOwnerFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "owner", Usage: "a folder name of the user with this UUID", Category: "owner"},
		&cli.StringFlag{Name: "project", Aliases: []string{"p"}, Usage: "a folder name of the project with this UUID", Category: "owner"},
	}
}

// sharedRef reads REF with --owner/--project.
func sharedRef(c *cli.Context) (string, meta.ScopeID, error) {
	if err := needArgs(c, 1, 1); err != nil {
		return "", meta.ScopeID{}, err
	}
	ref := c.Args().First()
	o, p := c.String("owner"), c.String("project")
	var owner meta.ScopeID
	var err error
	switch {
	case o != "" && p != "":
		return "", meta.ScopeID{}, usagef(c, "give --owner or --project, not both")
	case o != "":
		if owner, err = meta.UserScope(o); err != nil {
			return "", meta.ScopeID{}, fmt.Errorf("--owner %q is not a UUID", o)
		}
	case p != "":
		if owner, err = meta.ProjectScope(p); err != nil {
			return "", meta.ScopeID{}, fmt.Errorf("--project %q is not a UUID", p)
		}
	default:
		if _, err := meta.ParseUUID(ref); err != nil {
			return "", meta.ScopeID{}, usagef(c, "%q is not a folder id; to refer to a folder by name, add --owner UUID or --project UUID", ref)
		}
	}
	return ref, owner, nil
}

func needPerm(c *cli.Context) (meta.Permission, error) {
	p, err := permissionFlag(c, "perm")
	if err == nil && p == "" {
		err = usagef(c, "%s needs --perm ro, rw or wd", commandPath(c))
	}
	return p, err
}

func sharingCommands(st *state) []*cli.Command {
	return []*cli.Command{
		{
			Name:        "invite",
			Usage:       "offer a user's folder to another user",
			ArgsUsage:   "REF",
			Description: "REF is a folder id, or a folder name together with --user (the owner).\n" + sharingHelp,
			Flags: []cli.Flag{
				userFlag("the inviter: the folder's owner (needed for a folder name)"),
				&cli.StringFlag{Name: "to", Usage: "the invitee's user UUID"},
				&cli.StringFlag{Name: "perm", Usage: "permission offered: ro, rw or wd (at most the owner's)"},
			},
			Action: st.invite,
		},
		{
			Name:        "invitations",
			Usage:       "list the invitations a user sent and received",
			Description: sharingHelp,
			Flags:       []cli.Flag{userFlag("the user")},
			Action:      st.invitations,
		},
		settleCommand(st, "accept", "accept an invitation (the invitee)", "the invitee"),
		settleCommand(st, "reject", "reject an invitation (the invitee)", "the invitee"),
		settleCommand(st, "cancel", "cancel an invitation that is still pending (the inviter)", "the inviter (optional: checked when given)"),
		{
			Name:        "leave",
			Usage:       "give up a folder one was invited to",
			ArgsUsage:   "REF",
			Description: "REF is the folder's id or its name in the user's folders (list --user).",
			Flags:       []cli.Flag{userFlag("the invitee")},
			Action:      st.leave,
		},
		{
			Name:      "share",
			Usage:     "set one user's permission on one folder",
			ArgsUsage: "REF",
			Description: "On a project folder: a per-folder permission of a member, which beats the\n" +
				"membership's default. On a user's folder: a change of what an accepted invitation\n" +
				"granted (at most the owner's permission).\n" +
				"REF is a folder id, or a folder name with --project UUID (or --owner UUID).",
			Flags: append(folderOwnerFlags(),
				userFlag("the user who gets the permission"),
				&cli.StringFlag{Name: "perm", Usage: "ro, rw or wd"},
			),
			Action: st.share,
		},
		{
			Name:      "unshare",
			Usage:     "take one user's share of a folder away",
			ArgsUsage: "REF",
			Description: "Revokes an invitee (the folder leaves their views at once), or removes a member's\n" +
				"per-folder permission on a project folder (the membership's default applies again).\n" +
				"REF is a folder id, or a folder name with --owner UUID or --project UUID.",
			Flags:  append(folderOwnerFlags(), userFlag("the user whose share goes")),
			Action: st.unshare,
		},
		{
			Name:      "shares",
			Usage:     "list who holds a share of a folder",
			ArgsUsage: "REF",
			Flags:     folderOwnerFlags(),
			Action:    st.shares,
		},
		{
			Name:   "status",
			Usage:  "a user's storage status: folders created and allowed, project and invited folders, usage per volume",
			Flags:  []cli.Flag{userFlag("the user")},
			Action: st.status,
		},
	}
}

func settleCommand(st *state, action, usage, who string) *cli.Command {
	return &cli.Command{
		Name:      action,
		Usage:     usage,
		ArgsUsage: "ID",
		Flags:     []cli.Flag{userFlag(who)},
		Action: func(c *cli.Context) error {
			if err := needArgs(c, 1, 1); err != nil {
				return err
			}
			var user string
			if action != "cancel" || c.String("user") != "" {
				var err error
				if user, err = needUser(c, who); err != nil {
					return err
				}
			}
			inv, err := st.client.SettleInvitation(ctxOf(c), c.Args().First(), action, user)
			if err != nil {
				return err
			}
			return st.outputLine(inv, "Invitation %s to folder %q is %s.", inv.ID, inv.FolderName, inv.State)
		},
	}
}

func (st *state) invite(c *cli.Context) error {
	if err := needArgs(c, 1, 1); err != nil {
		return err
	}
	ref := c.Args().First()
	var inviter string
	if u := c.String("user"); u != "" {
		h, err := meta.ParseUUID(u)
		if err != nil {
			return fmt.Errorf("--user %q is not a UUID", u)
		}
		inviter = h
	} else if _, err := meta.ParseUUID(ref); err != nil {
		return usagef(c, "%q is not a folder id; to refer to a folder by name, add --user UUID (the owner)", ref)
	}
	to := c.String("to")
	if to == "" {
		return usagef(c, "invite needs --to UUID (the invitee)")
	}
	perm, err := needPerm(c)
	if err != nil {
		return err
	}
	inv, err := st.client.Invite(ctxOf(c), api.InviteRequest{Folder: ref, User: inviter, Invitee: to, Permission: perm})
	if err != nil {
		return err
	}
	return st.outputLine(inv, "Invited user %s to folder %q at %s; invitation %s is pending.", inv.Invitee, inv.FolderName, inv.Permission, inv.ID)
}

func (st *state) invitations(c *cli.Context) error {
	if err := needArgs(c, 0, 0); err != nil {
		return err
	}
	u, err := needUser(c, "whose invitations")
	if err != nil {
		return err
	}
	is, err := st.client.Invitations(ctxOf(c), u)
	if err != nil {
		return err
	}
	return outputList(st, is, []string{"ID", "DIRECTION", "FOLDER", "FOLDER ID", "INVITER", "INVITEE", "PERM", "STATE", "CREATED"}, invitationRows)
}

func invitationRows(is []api.Invitation) [][]string {
	rows := make([][]string, 0, len(is))
	for _, i := range is {
		rows = append(rows, []string{i.ID, dash(i.Direction), dash(i.FolderName), i.Folder, i.Inviter, i.Invitee, string(i.Permission), string(i.State), fmtTime(i.CreatedAt)})
	}
	return rows
}

func (st *state) leave(c *cli.Context) error {
	if err := needArgs(c, 1, 1); err != nil {
		return err
	}
	u, err := needUser(c, "the invitee")
	if err != nil {
		return err
	}
	sh, err := st.client.Leave(ctxOf(c), u, c.Args().First())
	if err != nil {
		return err
	}
	return st.outputLine(sh, "User %s left folder %q (%s).", sh.User, sh.FolderName, sh.Folder)
}

func (st *state) share(c *cli.Context) error {
	ref, owner, err := sharedRef(c)
	if err != nil {
		return err
	}
	u, err := needUser(c, "who gets the permission")
	if err != nil {
		return err
	}
	perm, err := needPerm(c)
	if err != nil {
		return err
	}
	sh, err := st.client.SetShare(ctxOf(c), ref, owner, api.ShareRequest{User: u, Permission: perm})
	if err != nil {
		return err
	}
	return st.outputLine(sh, "User %s has %s on folder %q (%s).", sh.User, sh.Permission, sh.FolderName, sh.Via)
}

func (st *state) unshare(c *cli.Context) error {
	ref, owner, err := sharedRef(c)
	if err != nil {
		return err
	}
	u, err := needUser(c, "whose share goes")
	if err != nil {
		return err
	}
	sh, err := st.client.Unshare(ctxOf(c), ref, owner, u)
	if err != nil {
		return err
	}
	return st.outputLine(sh, "Removed the share of folder %q for user %s (was %s).", sh.FolderName, sh.User, sh.Permission)
}

func (st *state) shares(c *cli.Context) error {
	ref, owner, err := sharedRef(c)
	if err != nil {
		return err
	}
	ss, err := st.client.Shares(ctxOf(c), ref, owner)
	if err != nil {
		return err
	}
	return outputList(st, ss, []string{"USER", "PERM", "VIA", "FOLDER", "SINCE"}, func(ss []api.Share) [][]string {
		rows := make([][]string, 0, len(ss))
		for _, s := range ss {
			rows = append(rows, []string{s.User, string(s.Permission), s.Via, s.FolderName, fmtTime(s.CreatedAt)})
		}
		return rows
	})
}

// listReach is 'list --user U' without --all/--trash: every folder the
// user reaches, with how and at which permission.
func (st *state) listReach(c *cli.Context, user, volume string) error {
	fs, err := st.client.Reach(ctxOf(c), user)
	if err != nil {
		return err
	}
	out := make([]api.ReachedFolder, 0, len(fs))
	for _, f := range fs {
		if volume == "" || f.Volume == volume {
			out = append(out, f)
		}
	}
	return outputList(st, out, []string{"NAME", "ID", "OWNER", "VIA", "PERM", "VOLUME", "STATUS"}, func(fs []api.ReachedFolder) [][]string {
		rows := make([][]string, 0, len(fs))
		for _, f := range fs {
			rows = append(rows, []string{f.ViewName, f.ID, f.Owner.String(), f.Via, string(f.EffectivePermission), f.Volume, string(f.Status)})
		}
		return rows
	})
}

func (st *state) status(c *cli.Context) error {
	if err := needArgs(c, 0, 0); err != nil {
		return err
	}
	u, err := needUser(c, "whose status")
	if err != nil {
		return err
	}
	s, err := st.client.UserStatus(ctxOf(c), u)
	if err != nil {
		return err
	}
	return st.output(s, func() error {
		maxF := "unlimited"
		if s.MaxFolders > 0 {
			maxF = fmt.Sprint(s.MaxFolders)
		}
		if err := printKV(st.stdout, []kv{
			{"user", s.User},
			{"folders created", fmt.Sprintf("%d / %s", s.FoldersCreated, maxF)},
			{"project folders", fmt.Sprint(s.ProjectFolders)},
			{"invited folders", fmt.Sprint(s.InvitedFolders)},
		}); err != nil {
			return err
		}
		fmt.Fprintln(st.stdout)
		rows := make([][]string, 0, len(s.Usage))
		for _, q := range s.Usage {
			rows = append(rows, []string{q.Scope.String(), q.Volume, sizeWithBytes(q.UsedBytes), limitText(q.LimitBytes)})
		}
		return printTable(st.stdout, []string{"SCOPE", "VOLUME", "USED", "LIMIT"}, rows)
	})
}
