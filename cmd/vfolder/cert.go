package main

// vfolder cert: issue the certificates of the API's TLS listener (package
// pki): the admins' CA, the daemon's server certificate and admin client
// certificates. Works offline; it never calls the daemon.

import (
	"fmt"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/vfolder/vfolder/internal/pki"
)

func certCommand(st *state) *cli.Command {
	validity := func(def time.Duration) cli.Flag {
		return &cli.DurationFlag{Name: "valid-for", Usage: "lifetime of the certificate", Value: def}
	}
	caFlag := &cli.StringFlag{Name: "ca", Usage: "`DIR` of the CA (holding ca.crt and ca.key; required)"}
	outFlag := &cli.StringFlag{Name: "out", Usage: "`DIR` to write NAME.crt and NAME.key into (default: the CA's)"}
	return &cli.Command{
		Name:  "cert",
		Usage: "issue certificates for the API's TLS listener (vfolderd --api-listen)",
		Description: `Keys are ECDSA P-256, written mode 0600; nothing is ever overwritten.
A typical setup:

  vfolder cert issue-ca /etc/vfolder/tls
  vfolder cert issue-server --ca /etc/vfolder/tls --host node1.example.org server
  vfolder cert issue-client --ca /etc/vfolder/tls --out ~/.vfolder manager

then vfolderd --api-listen :7443 --api-tls-cert /etc/vfolder/tls/server.crt
--api-tls-key /etc/vfolder/tls/server.key --api-client-ca /etc/vfolder/tls/ca.crt,
and vfolder --api-url https://node1.example.org:7443 --tls-ca ca.crt
--tls-cert manager.crt --tls-key manager.key list.`,
		Subcommands: []*cli.Command{
			{
				Name:      "issue-ca",
				Usage:     "create a CA (ca.crt, ca.key) in DIR",
				ArgsUsage: "DIR",
				Flags:     []cli.Flag{&cli.StringFlag{Name: "name", Usage: "the CA's common name", Value: "vfolder admin CA"}, validity(pki.DefaultCAValidity)},
				Action: func(c *cli.Context) error {
					if err := needArgs(c, 1, 1); err != nil {
						return err
					}
					is, err := pki.IssueCA(c.Args().First(), c.String("name"), c.Duration("valid-for"))
					return st.printIssued(is, err)
				},
			},
			{
				Name:      "issue-server",
				Usage:     "issue the daemon's server certificate NAME for its host names",
				ArgsUsage: "NAME",
				Flags: []cli.Flag{caFlag, outFlag, validity(pki.DefaultLeafValidity),
					&cli.StringSliceFlag{Name: "host", Usage: "a DNS name or IP address clients use to reach the daemon (repeatable, or comma-separated; at least one)"}},
				Action: func(c *cli.Context) error {
					if err := leafArgs(c); err != nil {
						return err
					}
					var hosts []string
					for _, h := range c.StringSlice("host") {
						for _, x := range strings.Split(h, ",") {
							if x = strings.TrimSpace(x); x != "" {
								hosts = append(hosts, x)
							}
						}
					}
					if len(hosts) == 0 {
						return usagef(c, "give the daemon's host names or IP addresses with --host")
					}
					is, err := pki.IssueServer(c.String("ca"), outDir(c), c.Args().First(), hosts, c.Duration("valid-for"))
					return st.printIssued(is, err)
				},
			},
			{
				Name:      "issue-client",
				Usage:     "issue an admin client certificate NAME (its holder may call every route)",
				ArgsUsage: "NAME",
				Flags:     []cli.Flag{caFlag, outFlag, validity(pki.DefaultLeafValidity)},
				Action: func(c *cli.Context) error {
					if err := leafArgs(c); err != nil {
						return err
					}
					is, err := pki.IssueClient(c.String("ca"), outDir(c), c.Args().First(), c.Duration("valid-for"))
					return st.printIssued(is, err)
				},
			},
		},
	}
}

// leafArgs checks NAME and --ca.
func leafArgs(c *cli.Context) error {
	if err := needArgs(c, 1, 1); err != nil {
		return err
	}
	if c.String("ca") == "" {
		return usagef(c, "give the CA's directory with --ca DIR (made by 'vfolder cert issue-ca DIR')")
	}
	return nil
}

func outDir(c *cli.Context) string {
	if o := c.String("out"); o != "" {
		return o
	}
	return c.String("ca")
}

func (st *state) printIssued(is pki.Issued, err error) error {
	if err != nil {
		return err
	}
	if st.json {
		return printJSON(st.stdout, map[string]any{"cert_file": is.CertFile, "key_file": is.KeyFile, "subject": is.Subject, "not_after": is.NotAfter.UTC()})
	}
	_, err = fmt.Fprintf(st.stdout, "wrote %s and %s (key, mode 0600)\nsubject %s, valid until %s\n", is.CertFile, is.KeyFile, is.Subject, is.NotAfter.UTC().Format(time.RFC3339))
	return err
}
