package main

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/vfolder/vfolder/api"
)

const viewHelp = `Views are the directories of vfolderd's FUSE namespace:

  <mount-point>/users/<user-uuid>/<folder>         every live folder of a user
  <mount-point>/projects/<project-uuid>/<folder>   every live folder of a project
  <mount-point>/sessions/<session>/<name>          session views (view add/remove)

A session view shows one folder (or a directory inside it, --subpath) at a
mode (ro, rw or wd) that may not exceed the folder's permission, with every
file owned by --uid/--gid. A folder with session views cannot be trashed or
purged. Session views are not kept across a restart of vfolderd.`

func viewCommand(st *state) *cli.Command {
	return &cli.Command{
		Name:        "view",
		Usage:       "views of folders in vfolderd's FUSE namespace",
		Description: viewHelp,
		Subcommands: []*cli.Command{
			{
				Name:    "list",
				Aliases: []string{"ls"},
				Usage:   "list views (all of them, or one session's)",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "session", Aliases: []string{"s"}, Usage: "only the views of this session"},
				},
				Action: st.viewList,
			},
			{
				Name:      "add",
				Usage:     "add a session view of a folder",
				ArgsUsage: "SESSION NAME REF",
				Description: "Adds sessions/SESSION/NAME showing folder REF.\n" + refHelp + "\n" +
					"--mode defaults to the folder's permission; --uid/--gid (given together) default to the daemon's view uid/gid.",
				Flags: append(ownerFlags("a folder name of"),
					&cli.StringFlag{Name: "subpath", Usage: "show only this directory inside the folder (relative path)"},
					&cli.StringFlag{Name: "mode", Aliases: []string{"m"}, Usage: "ro, rw or wd (at most the folder's permission)"},
					&cli.StringFlag{Name: "uid", Usage: "`UID` every file in the view shows"},
					&cli.StringFlag{Name: "gid", Usage: "`GID` every file in the view shows"},
				),
				Action: st.viewAdd,
			},
			{
				Name:      "remove",
				Aliases:   []string{"rm"},
				Usage:     "remove a session view",
				ArgsUsage: "SESSION NAME",
				Action:    st.viewRemove,
			},
		},
	}
}

// ownerIDFlags reads --uid and --gid, which go together: nil, nil when
// neither is given.
func ownerIDFlags(c *cli.Context) (uid, gid *uint32, err error) {
	if c.IsSet("uid") != c.IsSet("gid") {
		return nil, nil, usagef(c, "give --uid and --gid together")
	}
	if !c.IsSet("uid") {
		return nil, nil, nil
	}
	u, err := parseID("uid", c.String("uid"))
	if err != nil {
		return nil, nil, err
	}
	g, err := parseID("gid", c.String("gid"))
	if err != nil {
		return nil, nil, err
	}
	return &u, &g, nil
}

// parseID parses a uid or gid flag value.
func parseID(flag, s string) (uint32, error) {
	n, err := strconv.ParseUint(strings.TrimSpace(s), 10, 32)
	if err != nil || n == uint64(^uint32(0)) {
		return 0, fmt.Errorf("--%s %q is not an id: give a whole number from 0 to %d", flag, s, ^uint32(0)-1)
	}
	return uint32(n), nil
}

func (st *state) viewList(c *cli.Context) error {
	if err := needArgs(c, 0, 0); err != nil {
		return err
	}
	var f api.ViewFilter
	if s := c.String("session"); c.IsSet("session") {
		if s == "" {
			return usagef(c, "--session needs a session id")
		}
		f = api.ViewFilter{Namespace: api.NSSessions, Key: s}
	}
	vs, err := st.client.Views(ctxOf(c), f)
	if err != nil {
		return err
	}
	return outputList(st, vs, viewHeader, viewRows)
}

func (st *state) viewAdd(c *cli.Context) error {
	if err := needArgs(c, 3, 3); err != nil {
		return err
	}
	session, name, ref := c.Args().Get(0), c.Args().Get(1), c.Args().Get(2)
	owner, err := folderRef(c, ref)
	if err != nil {
		return err
	}
	req := api.CreateViewRequest{Session: session, Name: name, Folder: ref, Subpath: c.String("subpath")}
	if !owner.IsZero() {
		req.Owner = &owner
	}
	if req.Mode, err = permissionFlag(c, "mode"); err != nil {
		return err
	}
	if req.UID, req.GID, err = ownerIDFlags(c); err != nil {
		return err
	}
	v, err := st.client.AddView(ctxOf(c), req)
	if err != nil {
		return err
	}
	return st.output(v, func() error {
		fmt.Fprintf(st.stdout, "View %s/%s/%s of folder %s is at %s.\n", v.Namespace, v.Key, v.Name, v.FolderID, v.Path)
		return printKV(st.stdout, viewKV(v))
	})
}

func (st *state) viewRemove(c *cli.Context) error {
	if err := needArgs(c, 2, 2); err != nil {
		return err
	}
	v, err := st.client.RemoveView(ctxOf(c), c.Args().Get(0), c.Args().Get(1))
	if err != nil {
		return err
	}
	return st.outputLine(v, "Removed view %s/%s/%s (folder %s).", v.Namespace, v.Key, v.Name, v.FolderID)
}

var viewHeader = []string{"NAMESPACE", "KEY", "NAME", "FOLDER", "MODE", "UID:GID", "SUBPATH", "PATH"}

func viewRows(vs []api.View) [][]string {
	rows := make([][]string, 0, len(vs))
	for _, v := range vs {
		sub := v.Subpath
		if sub == "" {
			sub = "-"
		}
		rows = append(rows, []string{v.Namespace, v.Key, v.Name, v.FolderID, string(v.Mode),
			fmt.Sprintf("%d:%d", v.UID, v.GID), sub, v.Path})
	}
	return rows
}

func viewKV(v api.View) []kv {
	sub := v.Subpath
	if sub == "" {
		sub = "(whole folder)"
	}
	return []kv{
		{"path", v.Path},
		{"folder", v.FolderID},
		{"volume", v.Volume},
		{"subpath", sub},
		{"mode", string(v.Mode)},
		{"uid:gid", fmt.Sprintf("%d:%d", v.UID, v.GID)},
	}
}
