package main

// The API's optional TLS listener ([api] listen, --api-listen): the same
// server as the socket's, on a TCP port, with mutual TLS (see
// internal/server/tls.go for who may call what).

import (
	"net"

	"github.com/rs/zerolog"
	"github.com/urfave/cli/v2"

	"github.com/vfolder/vfolder/internal/config"
	"github.com/vfolder/vfolder/internal/server"
)

func apiFlags(env func(string) []string) []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "api-listen", EnvVars: env("API_LISTEN"), Category: "remote API", Usage: "serve the API over TLS on `HOST:PORT` as well, for a manager on another host ([api] listen)", DefaultText: "off"},
		&cli.StringFlag{Name: "api-tls-cert", EnvVars: env("API_TLS_CERT"), Category: "remote API", Usage: "PEM `FILE` of the listener's certificate ([api] tls_cert)"},
		&cli.StringFlag{Name: "api-tls-key", EnvVars: env("API_TLS_KEY"), Category: "remote API", Usage: "PEM `FILE` of the listener's key ([api] tls_key)"},
		&cli.StringFlag{Name: "api-client-ca", EnvVars: env("API_CLIENT_CA"), Category: "remote API", Usage: "PEM `FILE` of the CA that signs admin client certificates ([api] client_ca)"},
	}
}

// apiConfig applies the remote API flags over the file.
func apiConfig(c *cli.Context, cfg *config.Config) {
	for _, f := range []struct {
		flag string
		dst  *string
	}{{"api-listen", &cfg.API.Listen}, {"api-tls-cert", &cfg.API.TLSCert}, {"api-tls-key", &cfg.API.TLSKey}, {"api-client-ca", &cfg.API.ClientCA}} {
		if c.IsSet(f.flag) {
			*f.dst = c.String(f.flag)
		}
	}
}

// listenAPI binds the TLS listener when one is configured (nil otherwise).
func listenAPI(cfg *config.Config, log zerolog.Logger) (net.Listener, error) {
	if !cfg.API.Enabled() {
		return nil, nil
	}
	tc, err := server.TLSConfig(server.TLSFiles{CertFile: cfg.API.TLSCert, KeyFile: cfg.API.TLSKey, ClientCAFile: cfg.API.ClientCA})
	if err != nil {
		return nil, err
	}
	l, err := server.ListenTLS(cfg.API.Listen, tc)
	if err != nil {
		return nil, err
	}
	log.Info().Str("api_listen", l.Addr().String()).Msg("API listening over TLS (client certificates of the admin CA are admin callers)")
	return l, nil
}
