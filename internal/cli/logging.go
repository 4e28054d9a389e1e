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
	switch format {
	case "json":
		return slog.New(slog.NewJSONHandler(env.Stderr, opts)), nil
	case "text":
		return slog.New(slog.NewTextHandler(env.Stderr, opts)), nil
	}
	return nil, UsageError("--log-format: want json or text, got %q", l.format)
}

// settingError turns a config error into a one-line usage error.
func settingError(err error) error { return UsageError("%v", err) }
