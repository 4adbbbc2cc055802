package main

// The CLI's way to the API's TLS listener: --api-url https://HOST:PORT with
// a client certificate, instead of the unix socket.

import (
	"net/url"

	"github.com/urfave/cli/v2"

	"github.com/vfolder/vfolder/api"
)

func remoteFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "api-url", Usage: "call vfolderd's TLS listener at `URL` (https://HOST:PORT) instead of the socket", EnvVars: []string{"VFOLDER_API_URL"}, Category: "remote API"},
		&cli.StringFlag{Name: "tls-cert", Usage: "client certificate `FILE` (PEM) issued by the admin CA, for --api-url", EnvVars: []string{"VFOLDER_TLS_CERT"}, Category: "remote API"},
		&cli.StringFlag{Name: "tls-key", Usage: "key `FILE` (PEM) of --tls-cert", EnvVars: []string{"VFOLDER_TLS_KEY"}, Category: "remote API"},
		&cli.StringFlag{Name: "tls-ca", Usage: "CA `FILE` (PEM) of the daemon's server certificate, for --api-url (default: the system's)", EnvVars: []string{"VFOLDER_TLS_CA"}, Category: "remote API"},
	}
}

// newClient is the client the global flags ask for: the socket, or the
// TLS listener with --api-url (which wins over --socket and
// VFOLDER_SOCKET).
func newClient(c *cli.Context) (*api.Client, error) {
	var cl *api.Client
	if u := c.String("api-url"); u != "" {
		if pu, err := url.Parse(u); err != nil || pu.Scheme != "https" || pu.Host == "" || (pu.Path != "" && pu.Path != "/") || pu.RawQuery != "" {
			return nil, usagef(nil, "--api-url %q: want https://HOST:PORT", u)
		}
		if (c.String("tls-cert") == "") != (c.String("tls-key") == "") {
			return nil, usagef(nil, "give --tls-cert and --tls-key together")
		}
		var err error
		cl, err = api.NewTLSClient(u, api.TLSFiles{CertFile: c.String("tls-cert"), KeyFile: c.String("tls-key"), CAFile: c.String("tls-ca")})
		if err != nil {
			return nil, err
		}
	} else {
		for _, f := range []string{"tls-cert", "tls-key", "tls-ca"} {
			if c.IsSet(f) {
				return nil, usagef(nil, "--%s is for --api-url (the TLS listener); the socket needs none", f)
			}
		}
		cl = api.NewClient(c.String("socket"))
	}
	cl.Timeout = c.Duration("timeout")
	if cl.Timeout <= 0 {
		cl.Timeout = -1 // no bound
	}
	return cl, nil
}
