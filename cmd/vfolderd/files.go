package main

import (
	"path/filepath"

	"github.com/rs/zerolog"

	"github.com/vfolder/vfolder/internal/config"
	"github.com/vfolder/vfolder/internal/files"
	"github.com/vfolder/vfolder/internal/service"
)

// newFileAPI sets up the file API with its token key (token_key_file,
// default <state_dir>/token.key).
func newFileAPI(cfg *config.Config, svc *service.Service, log zerolog.Logger) (*files.API, error) {
	key := cfg.TokenKeyFile
	if key == "" {
		key = filepath.Join(cfg.StateDir, "token.key")
	}
	return files.New(svc, files.Options{KeyFile: key, RecordDir: filepath.Join(cfg.StateDir, "uploads"), Log: log.With().Str("component", "files").Logger()})
}
