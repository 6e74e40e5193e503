// Package cli is cachekeeper's command-line interface. It is an importable
// package so tests drive it in-process: Run takes the arguments, the output
// writers and the environment, and returns the exit code.
package cli

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"

	"github.com/cachekeeper/cachekeeper/config"
	"github.com/redis/go-redis/v9"
	ucli "github.com/urfave/cli/v2"
)

// IO is what a command may touch of the outside world.
type IO struct {
	Stdout io.Writer
	Stderr io.Writer
	// Env looks up environment variables (os.Getenv in production).
	Env func(string) string
	// IsTerminal reports whether Stdout is a terminal (for progress bars).
	IsTerminal bool
}

// Run runs the CLI with args (without the program name) and returns the exit
// code. On failure it prints one line to Stderr.
func Run(ctx context.Context, args []string, io IO) int {
	if io.Env == nil {
		io.Env = func(string) string { return "" }
	}
	// urfave/cli v2 writes its package-level HelpFlag while parsing flags, so
	// two Runs in one process (tests, dev tools) must not parse at the same
	// time. The lock is held until the command's flags are parsed.
	var once sync.Once
	parseMu.Lock()
	unlock := func() { once.Do(parseMu.Unlock) }
	defer unlock()
	app := newApp(io, unlock)
	if slices.Contains(args, completionFlag) {
		return complete(ctx, app, args, io)
	}
	args, err := normalizeArgs(app, args)
	if err == nil {
		err = app.RunContext(ctx, append([]string{"cachekeeper"}, args...))
	}
	if err != nil {
		// No secret of the flags or the environment is printed, even
		// inside an error about a URL that does not parse.
		fmt.Fprintf(io.Stderr, "cachekeeper: %s\n", oneLine(config.RedactText(message(err), argSecrets(args, io.Env)...)))
	}
	return exitCode(err)
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(strings.ReplaceAll(s, "\n", " ")), " ")
}

var parseMu sync.Mutex

func newApp(io IO, parsed func()) *ucli.App {
	app := &ucli.App{
		Name:                 "cachekeeper",
		Usage:                "keep Redis caches, sessions and rate limits correct and small, as background jobs",
		Version:              Version,
		Writer:               io.Stdout,
		ErrWriter:            io.Stderr,
		EnableBashCompletion: true,
		HideHelpCommand:      true,
		ExitErrHandler:       func(*ucli.Context, error) {}, // Run maps errors to exit codes
		OnUsageError: func(c *ucli.Context, err error, _ bool) error {
			return usagef("%s (see '%s --help')", flagValueError(c.App.Flags, err), c.Command.HelpName)
		},
		CommandNotFound: func(c *ucli.Context, name string) {
			// urfave prints nothing and returns nil here; we want exit code 2.
		},
		Commands: []*ucli.Command{
			workerCommand(io),
			schedulerCommand(io), scheduleCommand(io),
			changesCommand(io),
			enqueueCommand(io),
			queuesCommand(io),
			inboxCommand(io),
			functionsCommand(io),
			taskCommand(io),
			eventsCommand(io),
			configCommand(io),
			devCommand(io),
			versionCommand(io),
			healthcheckCommand(io),
			completionCommand(io),
			benchCommand(io),
		},
		Description: "Configuration comes from --config (default ./" + config.DefaultFile + " if present), then the\n" +
			"environment (" + strings.Join(config.EnvVars, ", ") + "), then flags.\n" +
			"Exit codes: 0 success, 1 runtime failure, 2 usage or configuration error, 3 not found (a task, queue or dead letter).",
	}
	app.CustomAppHelpTemplate = ucli.AppHelpTemplate + globalFlagsHelp()
	setCommandDefaults(app.Commands, parsed)
	return app
}

// globalFlagsHelp lists, in the top-level --help, the connection flags that
// every command reading the configuration takes, before or after its name.
func globalFlagsHelp() string {
	var b strings.Builder
	b.WriteString("\nCONNECTION OPTIONS (every command that reads the configuration; before or after the command name):\n")
	var names, usages []string
	width := 0
	for _, f := range connFlags() {
		name, usage, _ := strings.Cut(f.String(), "\t")
		names, usages = append(names, name), append(usages, strings.ReplaceAll(usage, "{{", "{ {"))
		width = max(width, len(name))
	}
	for i := range names {
		fmt.Fprintf(&b, "   %-*s  %s\n", width, names[i], usages[i])
	}
	return b.String()
}

// setCommandDefaults makes a flag error in any command exit with code 2 and
// one line, instead of urfave's default of printing the whole help, and calls
// parsed once a leaf command's flags are parsed.
func setCommandDefaults(cmds []*ucli.Command, parsed func()) {
	for _, c := range cmds {
		if len(c.Subcommands) == 0 {
			before := c.Before
			c.Before = func(cc *ucli.Context) error {
				parsed()
				if before != nil {
					return before(cc)
				}
				return nil
			}
		}
		if c.OnUsageError == nil {
			c.OnUsageError = func(cc *ucli.Context, err error, _ bool) error {
				return usagef("%s (see '%s --help')", flagValueError(cc.Command.Flags, err), cc.Command.HelpName)
			}
		}
		if len(c.Subcommands) > 0 && c.Action == nil {
			c.Action = groupAction
		}
		c.HideHelpCommand = true
		setCommandDefaults(c.Subcommands, parsed)
	}
}

// Connection flags, on every command that talks to Redis or the database.
func connFlags() []ucli.Flag {
	flags := []ucli.Flag{
		&ucli.StringFlag{Name: "config", Aliases: []string{"c"}, Usage: "YAML config file (default ./" + config.DefaultFile + " if it exists)"},
		&ucli.StringFlag{Name: "redis-url", Usage: "Redis URL: redis://[user:pass@]host:6379/0, rediss://... (TLS), unix:///path.sock (env " + config.EnvRedisURL + ")"},
		&ucli.StringFlag{Name: "database-url", Usage: "database URL: postgres://..., mysql://user:pass@host:3306/db, sqlite://file.db (env " + config.EnvDatabaseURL + ")"},
		&ucli.StringFlag{Name: "log-level", Usage: "debug, info, warn or error (env " + config.EnvLogLevel + ")"},
	}
	for _, tf := range config.TLSFlags(&config.RedisTLSConfig{}) {
		flags = append(flags, &ucli.StringFlag{Name: tf.Name, Usage: tf.Usage})
	}
	return flags
}

func outputFlag() ucli.Flag {
	return &ucli.StringFlag{Name: "output", Aliases: []string{"o"}, Value: "table", Usage: "output format: table or json"}
}

// outputFormat returns the validated -o value.
func outputFormat(c *ucli.Context) (string, error) {
	switch f := c.String("output"); f {
	case "table", "json":
		return f, nil
	default:
		return "", usagef("--output %q must be table or json", f)
	}
}

// loadConfig reads the configuration: file, environment, then flags.
func loadConfig(c *ucli.Context, io IO, extra ...func(*config.Config)) (config.Config, error) {
	flags := config.Flags{File: c.String("config"), RedisURL: c.String("redis-url"), DatabaseURL: c.String("database-url"), LogLevel: c.String("log-level")}
	for _, tf := range config.TLSFlags(&flags.RedisTLS) {
		*tf.Dst = c.String(tf.Name)
	}
	return flags.Load(io.Env, extra...)
}

// newLogger builds the process logger; logs go to stderr, never stdout, with
// every password removed (config.RedactingWriter).
func newLogger(cfg config.Config, w io.Writer) *slog.Logger {
	w = config.RedactingWriter(w, cfg.Secrets()...)
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.Log.Level))
	opts := &slog.HandlerOptions{Level: level}
	var l *slog.Logger
	if cfg.Log.Format == "json" {
		l = slog.New(slog.NewJSONHandler(w, opts))
	} else {
		l = slog.New(slog.NewTextHandler(w, opts))
	}
	// go-redis logs dial failures on its own; the command reports them once.
	redis.SetLogger(redisLogger{l})
	return l
}

type redisLogger struct{ l *slog.Logger }

func (r redisLogger) Printf(ctx context.Context, format string, v ...any) {
	r.l.Debug(fmt.Sprintf(format, v...), slog.String("component", "go-redis"))
}

func init() {
	// Quiet until a command builds its logger.
	redis.SetLogger(redisLogger{slog.New(slog.DiscardHandler)})
}

// Main is what cmd/cachekeeper calls.
func Main(ctx context.Context) int {
	return Run(ctx, os.Args[1:], IO{Stdout: os.Stdout, Stderr: os.Stderr, Env: os.Getenv, IsTerminal: isTerminal(os.Stdout)})
}
