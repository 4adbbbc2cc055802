package main

import (
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/urfave/cli/v2"
	"golang.org/x/crypto/ssh"

	"github.com/vfolder/vfolder/api"
	"github.com/vfolder/vfolder/meta"
)

const sshkeyHelp = `Public keys users log in with on vfolderd's SFTP endpoint (when it is
enabled: sftp.listen in the configuration, or --sftp-listen). The SSH login name
is the user's UUID (dashed or 32 hex digits):

  sftp -P 2022 -i ~/.ssh/id_ed25519 2b1a7c4e-5d3f-4a8e-9c0b-1f2e3d4c5b6a@HOST

A user sees /<folder>/ for every folder the user reaches, at its permission
and under its quota. A key belongs to one user. KEYFILE is a public key in
authorized_keys form (id_ed25519.pub); "-" reads it from standard input.
'remove' takes a KEYFILE, "-", a fingerprint (SHA256:...) or a key's ID.`

func sshkeyCommand(st *state) *cli.Command {
	user := &cli.StringFlag{Name: "user", Aliases: []string{"u"}, Usage: "the user's `UUID` (required)"}
	return &cli.Command{
		Name:        "sshkey",
		Usage:       "users' SSH keys for the SFTP endpoint",
		Description: sshkeyHelp,
		Subcommands: []*cli.Command{
			{
				Name:      "add",
				Usage:     "register a public key for a user",
				ArgsUsage: "KEYFILE|-",
				Flags: []cli.Flag{user,
					&cli.StringFlag{Name: "comment", Usage: "a comment to keep with the key (default: the key line's own)"},
				},
				Action: st.sshkeyAdd,
			},
			{
				Name:    "list",
				Aliases: []string{"ls"},
				Usage:   "list a user's keys",
				Flags:   []cli.Flag{user},
				Action:  st.sshkeyList,
			},
			{
				Name:      "remove",
				Aliases:   []string{"rm"},
				Usage:     "remove a user's key",
				ArgsUsage: "KEYFILE|-|FINGERPRINT|ID",
				Flags:     []cli.Flag{user},
				Action:    st.sshkeyRemove,
			},
		},
	}
}

// requiredUser is the required --user (a usage error when missing).
func requiredUser(c *cli.Context) (string, error) {
	u := c.String("user")
	if u == "" {
		return "", usagef(c, "%s needs --user UUID", commandPath(c))
	}
	return u, nil
}

// readKeyArg reads the key text named by arg: a file, or "-" for stdin.
func (st *state) readKeyArg(arg string) (string, error) {
	var r io.Reader
	if arg == "-" {
		r = st.stdin
	} else {
		f, err := os.Open(arg)
		if err != nil {
			return "", err
		}
		defer f.Close()
		r = f
	}
	b, err := io.ReadAll(io.LimitReader(r, meta.MaxSSHKeyLen+1))
	if err != nil {
		return "", err
	}
	if len(b) > meta.MaxSSHKeyLen {
		return "", fmt.Errorf("%s: more than %d bytes: not one public key", arg, meta.MaxSSHKeyLen)
	}
	return string(b), nil
}

func (st *state) sshkeyAdd(c *cli.Context) error {
	if err := needArgs(c, 1, 1); err != nil {
		return err
	}
	user, err := requiredUser(c)
	if err != nil {
		return err
	}
	text, err := st.readKeyArg(c.Args().First())
	if err != nil {
		return err
	}
	k, err := st.client.AddSSHKey(ctxOf(c), user, api.AddSSHKeyRequest{Key: text, Comment: c.String("comment")})
	if err != nil {
		return err
	}
	return st.output(k, func() error {
		fmt.Fprintf(st.stdout, "Key %s (%s) added for user %s.\n", k.Fingerprint, k.Type, k.User)
		return nil
	})
}

func (st *state) sshkeyList(c *cli.Context) error {
	if err := needArgs(c, 0, 0); err != nil {
		return err
	}
	user, err := requiredUser(c)
	if err != nil {
		return err
	}
	ks, err := st.client.SSHKeys(ctxOf(c), user)
	if err != nil {
		return err
	}
	return outputList(st, ks, []string{"FINGERPRINT", "TYPE", "COMMENT", "ADDED"}, func(ks []api.SSHKey) [][]string {
		rows := make([][]string, 0, len(ks))
		for _, k := range ks {
			rows = append(rows, []string{k.Fingerprint, k.Type, dash(k.Comment), fmtTime(k.CreatedAt)})
		}
		return rows
	})
}

func (st *state) sshkeyRemove(c *cli.Context) error {
	if err := needArgs(c, 1, 1); err != nil {
		return err
	}
	user, err := requiredUser(c)
	if err != nil {
		return err
	}
	id, err := st.keyID(c.Args().First())
	if err != nil {
		return err
	}
	k, err := st.client.RemoveSSHKey(ctxOf(c), user, id)
	if err != nil {
		return err
	}
	return st.outputLine(k, "Key %s removed from user %s.", k.Fingerprint, k.User)
}

// keyID turns a remove argument into the key's ID: a fingerprint or an ID
// as given, else the public key read from the file (or stdin).
func (st *state) keyID(arg string) (string, error) {
	if strings.HasPrefix(arg, "SHA256:") {
		return meta.SSHKeyID(arg)
	}
	if len(arg) == 64 && strings.Trim(arg, "0123456789abcdef") == "" {
		if _, err := os.Stat(arg); err != nil {
			return arg, nil
		}
	}
	text, err := st.readKeyArg(arg)
	if err != nil {
		return "", err
	}
	pub, _, _, _, err := ssh.ParseAuthorizedKey([]byte(text))
	if err != nil {
		return "", fmt.Errorf("%s: not a public key in authorized_keys form: %v", arg, err)
	}
	return meta.SSHKeyID(ssh.FingerprintSHA256(pub))
}
