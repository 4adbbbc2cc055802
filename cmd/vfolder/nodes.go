package main

import (
	"fmt"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/vfolder/vfolder/api"
)

const nodeHelp = `In cluster mode every vfolderd that shares the etcd is a node. 'node list'
shows each node with its status: alive (its lease in etcd is alive), stopped
(it stopped cleanly) or expired (its lease ran out without a clean stop: it was
killed, crashed or lost etcd), and the sessions an alive node holds folders
for (a folder mounted by a session on any alive node cannot be trashed or
purged). GRANTS is the cluster quota a node holds; it shows "-" until cluster
quota is enabled. Without a cluster the list holds this node alone.`

func nodeCommand(st *state) *cli.Command {
	return &cli.Command{
		Name:        "node",
		Usage:       "the nodes of the cluster",
		Description: nodeHelp,
		Subcommands: []*cli.Command{
			{
				Name:    "list",
				Aliases: []string{"ls"},
				Usage:   "list the nodes, their status and sessions",
				Action:  st.nodeList,
			},
		},
	}
}

func (st *state) nodeList(c *cli.Context) error {
	if err := needArgs(c, 0, 0); err != nil {
		return err
	}
	ns, err := st.client.Nodes(ctxOf(c))
	if err != nil {
		return err
	}
	return outputList(st, ns, []string{"NODE", "HOST", "VERSION", "STATUS", "SINCE", "SESSIONS", "GRANTS"}, nodeRows)
}

func nodeRows(ns []api.Node) [][]string {
	rows := make([][]string, 0, len(ns))
	for _, n := range ns {
		status := n.Status
		if n.Self {
			status += " (this node)"
		}
		since := n.StartedAt
		if n.Status == api.NodeStopped && !n.StoppedAt.IsZero() {
			since = n.StoppedAt
		}
		var sess []string
		for _, s := range n.Sessions {
			unit := "folders"
			if len(s.Folders) == 1 {
				unit = "folder"
			}
			sess = append(sess, fmt.Sprintf("%s (%d %s)", s.ID, len(s.Folders), unit))
		}
		var grants []string
		for _, g := range n.Grants {
			grants = append(grants, fmt.Sprintf("%s %s %s", g.Volume, g.Scope, sizeWithBytes(g.Bytes)))
		}
		rows = append(rows, []string{n.ID, n.Hostname, n.Version, status, fmtTime(since), dash(strings.Join(sess, ", ")), dash(strings.Join(grants, ", "))})
	}
	return rows
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
