package main

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/vfolder/vfolder/api"
	"github.com/vfolder/vfolder/meta"
)

const memberHelp = `A project member reaches every live folder of the project, at --permission
when it is given, else at each folder's own permission. The folders show under
<mount-point>/users/<user>/; a name the user already has (an own folder, or a
folder of another project) makes the project folder show as
"<name>@<first 8 hex digits of the project>".`

func memberCommand(st *state) *cli.Command {
	projectFlag := &cli.StringFlag{Name: "project", Aliases: []string{"p"}, Usage: "the project's `UUID`"}
	userFlag := &cli.StringFlag{Name: "user", Aliases: []string{"u"}, Usage: "the user's `UUID`"}
	return &cli.Command{
		Name:        "member",
		Usage:       "project membership",
		Description: memberHelp,
		Subcommands: []*cli.Command{
			{
				Name:  "add",
				Usage: "make a user a member of a project (or change the member's permission)",
				Flags: []cli.Flag{projectFlag, userFlag,
					&cli.StringFlag{Name: "permission", Usage: "ro, rw or wd on every folder of the project (default: each folder's own)"}},
				Action: st.memberAdd,
			},
			{
				Name:    "remove",
				Aliases: []string{"rm"},
				Usage:   "end a user's membership in a project",
				Flags:   []cli.Flag{projectFlag, userFlag},
				Action:  st.memberRemove,
			},
			{
				Name:    "list",
				Aliases: []string{"ls"},
				Usage:   "list a project's members",
				Flags:   []cli.Flag{projectFlag},
				Action:  st.memberList,
			},
		},
	}
}

// uuidFlag reads a required UUID flag.
func uuidFlag(c *cli.Context, name string) (string, error) {
	v := c.String(name)
	if v == "" {
		return "", usagef(c, "%s needs --%s UUID", commandPath(c), name)
	}
	u, err := meta.ParseUUID(v)
	if err != nil {
		return "", fmt.Errorf("--%s %q is not a UUID", name, v)
	}
	return u, nil
}

// memberArgs reads --project and --user of the member commands, which
// take no arguments.
func memberArgs(c *cli.Context) (project, user string, err error) {
	if err := needArgs(c, 0, 0); err != nil {
		return "", "", err
	}
	if project, err = uuidFlag(c, "project"); err != nil {
		return "", "", err
	}
	if user, err = uuidFlag(c, "user"); err != nil {
		return "", "", err
	}
	return project, user, nil
}

func (st *state) memberAdd(c *cli.Context) error {
	p, u, err := memberArgs(c)
	if err != nil {
		return err
	}
	perm, err := permissionFlag(c, "permission")
	if err != nil {
		return err
	}
	m, err := st.client.SetMember(ctxOf(c), p, u, perm)
	if err != nil {
		return err
	}
	return st.outputLine(m, "User %s is a member of project %s (%s).", m.User, m.Project, memberPerm(m))
}

func memberPerm(m api.Membership) string {
	if m.Permission == "" {
		return "each folder's permission"
	}
	return string(m.Permission) + " on every folder"
}

func (st *state) memberRemove(c *cli.Context) error {
	p, u, err := memberArgs(c)
	if err != nil {
		return err
	}
	m, err := st.client.RemoveMember(ctxOf(c), p, u)
	if err != nil {
		return err
	}
	return st.outputLine(m, "User %s is no longer a member of project %s.", m.User, m.Project)
}

func (st *state) memberList(c *cli.Context) error {
	if err := needArgs(c, 0, 0); err != nil {
		return err
	}
	p, err := uuidFlag(c, "project")
	if err != nil {
		return err
	}
	ms, err := st.client.Members(ctxOf(c), p)
	if err != nil {
		return err
	}
	return outputList(st, ms, []string{"USER", "PERMISSION"}, memberRows)
}

func memberRows(ms []api.Membership) [][]string {
	rows := make([][]string, 0, len(ms))
	for _, m := range ms {
		perm := string(m.Permission)
		if perm == "" {
			perm = "(folder's)"
		}
		rows = append(rows, []string{m.User, perm})
	}
	return rows
}

const mountHelp = `Publish folders into the containers of a compute session (what a container
runtime does through the API):

  vfolder mount publish SESSION --user UUID [--uid N --gid N] MOUNT... [--reserve TARGET]...

MOUNT is REF, REF=TARGET, REF:MODE or REF=TARGET:MODE. REF is a folder id, or
a folder name as the user sees it (their own folders and those of their
projects, "name@<project8>" on a clash), optionally followed by /subpath (a
name containing '=' is given by id). TARGET defaults to /home/work/<name>;
a relative target goes under /home/work. MODE (ro, rw, wd) defaults to the
user's permission and may not exceed it. The user's dot-folders are added
at /home/work/<name> unless --no-automount. --reserve holds a target for a
folder published later: containers that bind its placeholder see the
folder appear when it is published at that target.

The answer lists each mount's host path and its OCI mount (--json): put the
"oci" objects into the container's config.json mounts. Publishing again is
idempotent; extra mounts are added to the session. 'mount attach' injects the
session's mounts into a running container; 'mount unpublish' takes them
away (it exits 1 when something could not be removed, after removing
everything else).`

func mountCommand(st *state) *cli.Command {
	return &cli.Command{
		Name:        "mount",
		Usage:       "publish folders into compute sessions (containers)",
		Description: mountHelp,
		Subcommands: []*cli.Command{
			{
				Name:      "publish",
				Usage:     "publish folders for a session",
				ArgsUsage: "SESSION [MOUNT...]",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "user", Aliases: []string{"u"}, Usage: "the session owner's `UUID`"},
					&cli.StringFlag{Name: "uid", Usage: "`UID` every file in the session's views shows (with --gid)"},
					&cli.StringFlag{Name: "gid", Usage: "`GID` every file in the session's views shows (with --uid)"},
					&cli.BoolFlag{Name: "no-automount", Usage: "do not add the user's dot-folders"},
					&cli.StringSliceFlag{Name: "reserve", Usage: "hold `TARGET` for a folder published later (repeatable)"},
				},
				Action: st.mountPublish,
			},
			{
				Name:      "unpublish",
				Usage:     "take every mount of a session away",
				ArgsUsage: "SESSION",
				Action:    st.mountUnpublish,
			},
			{
				Name:      "list",
				Aliases:   []string{"ls"},
				Usage:     "list the published sessions, or one session's mounts",
				ArgsUsage: "[SESSION]",
				Action:    st.mountList,
			},
			{
				Name:      "attach",
				Usage:     "inject a session's mounts into a running container",
				ArgsUsage: "SESSION",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "pid", Usage: "`PID` of the container's init process, as the host sees it"},
				},
				Action: st.mountAttach,
			},
		},
	}
}

// parseMountArg parses REF[=TARGET][:MODE].
func parseMountArg(a string) (api.MountRequest, error) {
	var mr api.MountRequest
	if i := strings.LastIndexByte(a, ':'); i >= 0 {
		if m := meta.Permission(a[i+1:]); m.Valid() {
			mr.Mode, a = m, a[:i]
		}
	}
	ref, target, hasTarget := strings.Cut(a, "=")
	if ref == "" {
		return mr, fmt.Errorf("mount %q has no folder", a)
	}
	if hasTarget && target == "" {
		return mr, fmt.Errorf("mount %q has an empty target after '='", a)
	}
	mr.Folder, mr.Target = ref, target
	return mr, nil
}

func (st *state) mountPublish(c *cli.Context) error {
	if err := needArgs(c, 1, -1); err != nil {
		return err
	}
	user, err := uuidFlag(c, "user")
	if err != nil {
		return err
	}
	req := api.PublishRequest{User: user, Mounts: []api.MountRequest{}}
	for _, a := range c.Args().Slice()[1:] {
		mr, err := parseMountArg(a)
		if err != nil {
			return usagef(c, "%v", err)
		}
		req.Mounts = append(req.Mounts, mr)
	}
	if req.UID, req.GID, err = ownerIDFlags(c); err != nil {
		return err
	}
	if c.Bool("no-automount") {
		no := false
		req.Automount = &no
	}
	req.Reserve = c.StringSlice("reserve")
	s, err := st.client.Publish(ctxOf(c), c.Args().First(), req)
	if err != nil {
		return err
	}
	return st.output(s, func() error { return st.printSession(s) })
}

func (st *state) printSession(s api.Session) error {
	fmt.Fprintf(st.stdout, "Session %s: user %s, files shown as %d:%d, %d mount(s).\n", s.ID, s.User, s.UID, s.GID, len(s.Mounts))
	rows := make([][]string, 0, len(s.Mounts)+len(s.Reserved))
	for _, m := range s.Mounts {
		src := m.FolderID
		if m.Subpath != "" {
			src += "/" + m.Subpath
		}
		rows = append(rows, []string{m.Name, m.Target, string(m.Mode), src, m.HostPath})
	}
	for _, r := range s.Reserved {
		t := r.Target
		if t == "" {
			t = "(reserved)"
		}
		rows = append(rows, []string{r.Name, t, "-", "(reserved)", r.HostPath})
	}
	if err := printTable(st.stdout, []string{"NAME", "TARGET", "MODE", "FOLDER", "HOST PATH"}, rows); err != nil {
		return err
	}
	for _, r := range s.Revoked {
		fmt.Fprintf(st.stdout, "Revoked %s at %s (%s, folder %s): %s.\n", r.Name, r.Target, r.Mode, r.FolderID, r.Reason)
	}
	return nil
}

func (st *state) mountUnpublish(c *cli.Context) error {
	if err := needArgs(c, 1, 1); err != nil {
		return err
	}
	r, err := st.client.Unpublish(ctxOf(c), c.Args().First())
	if err != nil {
		return err
	}
	if err := st.outputLine(r, "Unpublished session %s: %d mount(s) removed.", r.Session, len(r.Removed)); err != nil {
		return err
	}
	if len(r.Problems) > 0 {
		return errors.New("could not remove everything:\n  " + strings.Join(r.Problems, "\n  "))
	}
	return nil
}

func (st *state) mountList(c *cli.Context) error {
	if err := needArgs(c, 0, 1); err != nil {
		return err
	}
	if c.NArg() == 1 {
		s, err := st.client.Session(ctxOf(c), c.Args().First())
		if err != nil {
			return err
		}
		return st.output(s, func() error { return st.printSession(s) })
	}
	ss, err := st.client.Sessions(ctxOf(c))
	if err != nil {
		return err
	}
	return outputList(st, ss, []string{"SESSION", "USER", "UID:GID", "MOUNTS", "RESERVED", "CREATED"}, sessionRows)
}

func sessionRows(ss []api.Session) [][]string {
	rows := make([][]string, 0, len(ss))
	for _, s := range ss {
		rows = append(rows, []string{s.ID, s.User, fmt.Sprintf("%d:%d", s.UID, s.GID), strconv.Itoa(len(s.Mounts)),
			strconv.Itoa(len(s.Reserved)), fmtTime(s.CreatedAt)})
	}
	return rows
}

func (st *state) mountAttach(c *cli.Context) error {
	if err := needArgs(c, 1, 1); err != nil {
		return err
	}
	if !c.IsSet("pid") {
		return usagef(c, "mount attach needs --pid PID")
	}
	pid, err := strconv.Atoi(strings.TrimSpace(c.String("pid")))
	if err != nil || pid <= 0 {
		return fmt.Errorf("--pid %q is not a process id", c.String("pid"))
	}
	s, err := st.client.Attach(ctxOf(c), c.Args().First(), pid)
	if err != nil {
		return err
	}
	return st.output(s, func() error {
		fmt.Fprintf(st.stdout, "Attached %d mount(s) of session %s to pid %d.\n", len(s.Mounts), s.ID, pid)
		return st.printSession(s)
	})
}
