package main

import (
	"errors"
	"path/filepath"

	"github.com/rs/zerolog"

	"github.com/vfolder/vfolder/internal/config"
	"github.com/vfolder/vfolder/internal/files"
	"github.com/vfolder/vfolder/internal/service"
)

// newFileAPI sets up the file API with its token key (token_key_file,
// default <state_dir>/token.key). An unsafe key file stops the daemon (the
// operator must fix it); a key that cannot be read or made (a full state
// disk at the first start, say) leaves the file API off, logged, and the
// daemon serves the rest.
func newFileAPI(cfg *config.Config, svc *service.Service, log zerolog.Logger) (*files.API, error) {
	key := cfg.TokenKeyFile
	if key == "" {
		key = filepath.Join(cfg.StateDir, "token.key")
	}
	a, err := files.New(svc, files.Options{KeyFile: key, RecordDir: filepath.Join(cfg.StateDir, "uploads"), Log: log.With().Str("component", "files").Logger()})
	if errors.Is(err, files.ErrKeyUnsafe) {
		return nil, err
	}
	if err != nil {
		log.Error().Err(err).Msg("the file API is off until the next start")
		return nil, nil
	}
	return a, nil
}
