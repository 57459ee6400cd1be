// Package logging builds cleave's zap logger from the log configuration: JSON by default,
// console when stderr is a terminal, and a file rotated by size (rotated files compressed,
// kept by count and age) when log.file is set. It owns no global logger: the one it
// returns is passed to every part that logs.
package logging

import (
	"fmt"
	"os"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"golang.org/x/term"
	"gopkg.in/natefinch/lumberjack.v2"

	"github.com/cleave-dev/cleave/config"
)

// New returns a logger for cfg. Its Sync should be called before the process exits.
func New(cfg config.Log) (*zap.Logger, error) {
	var level zapcore.Level
	if err := level.UnmarshalText([]byte(cfg.Level)); err != nil {
		return nil, fmt.Errorf("log.level: %w", err)
	}
	var sink zapcore.WriteSyncer = zapcore.Lock(os.Stderr)
	console := cfg.Format == "console" || (cfg.Format == "auto" && term.IsTerminal(int(os.Stderr.Fd())))
	if cfg.File != "" {
		sink = zapcore.AddSync(&lumberjack.Logger{
			Filename:   cfg.File,
			MaxSize:    cfg.MaxSizeMB,
			MaxBackups: cfg.MaxBackups,
			MaxAge:     cfg.MaxAgeDays,
			Compress:   true,
		})
		console = cfg.Format == "console"
	}
	encCfg := zap.NewProductionEncoderConfig()
	encCfg.EncodeTime = zapcore.ISO8601TimeEncoder
	var enc zapcore.Encoder
	if console {
		encCfg.EncodeLevel = zapcore.CapitalColorLevelEncoder
		enc = zapcore.NewConsoleEncoder(encCfg)
	} else {
		enc = zapcore.NewJSONEncoder(encCfg)
	}
	return zap.New(zapcore.NewCore(enc, sink, level), zap.ErrorOutput(zapcore.Lock(os.Stderr))), nil
}
