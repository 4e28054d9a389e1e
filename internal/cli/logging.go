package cli

import (
	"flag"
	"log/slog"
	"strings"
)

// logFlags are the logging flags every long-running command takes.
type logFlags struct {
	format string
	level  string
}

func (l *logFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&l.format, "log-format", "", "log format: json or text (default: text on a terminal, else json)")
	fs.StringVar(&l.level, "log-level", "info", "log level: debug (one line per API call), info, warn or error")
}

// logger builds the command's slog.Logger writing to env.Stderr.
func (l *logFlags) logger(env *Env) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(l.level)); err != nil {
		return nil, UsageError("--log-level: want debug, info, warn or error, got %q", l.level)
	}
	opts := &slog.HandlerOptions{Level: level}
	format := strings.ToLower(l.format)
	if format == "" {
		format = "json"
		if env.IsTerminal {
			format = "text"
		}
	}
	var log *slog.Logger
	switch format {
	case "json":
		log = slog.New(slog.NewJSONHandler(env.Stderr, opts))
	case "text":
		log = slog.New(slog.NewTextHandler(env.Stderr, opts))
	default:
		return nil, UsageError("--log-format: want json or text, got %q", l.format)
	}
	if env.RedisLog != nil {
		// go-redis's pool messages join this log in its format.
		env.RedisLog.Use(log)
	}
	return log, nil
}

// settingError turns a config error into a one-line usage error.
func settingError(err error) error { return UsageError("%v", err) }
