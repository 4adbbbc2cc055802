package etcdstore

import (
	"strings"

	"github.com/rs/zerolog"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// zapLogger is the etcd client's logger: its lines go to log at debug
// level whatever their zap level (the client logs retries and reconnects
// as warnings; what matters of them reaches the caller as an error). When
// log would drop debug lines the client gets a no-op logger, so that it
// formats nothing.
func zapLogger(log zerolog.Logger) *zap.Logger {
	e := log.Debug()
	if !e.Enabled() {
		return zap.NewNop()
	}
	e.Discard()
	enc := zapcore.NewConsoleEncoder(zapcore.EncoderConfig{
		MessageKey:     "msg",
		LevelKey:       "level",
		NameKey:        "logger",
		EncodeLevel:    zapcore.LowercaseLevelEncoder,
		EncodeDuration: zapcore.StringDurationEncoder,
		EncodeName:     zapcore.FullNameEncoder,
	})
	core := zapcore.NewCore(enc, zapcore.AddSync(zerologWriter{log.With().Str("sub", "etcd-client").Logger()}), zapcore.DebugLevel)
	return zap.New(core)
}

// zerologWriter writes each line zap encodes as one zerolog debug event.
type zerologWriter struct{ l zerolog.Logger }

func (w zerologWriter) Write(p []byte) (int, error) {
	w.l.Debug().Msg(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
