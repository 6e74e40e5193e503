package cli

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"syscall"

	"github.com/cachekeeper/cachekeeper/config"
	"github.com/cachekeeper/cachekeeper/tasks"
	"github.com/cachekeeper/cachekeeper/worker"
	ucli "github.com/urfave/cli/v2"
)

// Exit codes.
const (
	ExitOK      = 0
	ExitRuntime = 1 // the command ran and failed (Redis down, job failed...)
	ExitUsage   = 2 // bad flags, arguments or configuration: nothing was done
	// ExitNotFound: what the command names (a task, a queue, a dead
	// letter) does not exist. The command was right; the thing is not there.
	ExitNotFound = 3
)

// ErrNotFound marks errors about a named thing that does not exist.
var ErrNotFound = errors.New("not found")

// notFoundf returns an error that exits with ExitNotFound.
func notFoundf(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrNotFound, fmt.Sprintf(format, a...))
}

// ErrUsage marks errors in what the user asked for.
var ErrUsage = errors.New("usage error")

// usagef returns an error that exits with ExitUsage.
func usagef(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrUsage, fmt.Sprintf(format, a...))
}

// exitCode maps an error to the process exit code.
func exitCode(err error) int {
	switch {
	case err == nil:
		return ExitOK
	case errors.Is(err, ErrNotFound):
		return ExitNotFound
	case errors.Is(err, ErrUsage), errors.Is(err, config.ErrInvalid), errors.Is(err, tasks.ErrInvalidPayload), errors.Is(err, worker.ErrInvalidCache):
		return ExitUsage
	}
	return ExitRuntime
}

// message renders err as the one line printed on failure.
func message(err error) string {
	msg := err.Error()
	for _, prefix := range []string{ErrNotFound.Error() + ": ", ErrUsage.Error() + ": ", config.ErrInvalid.Error() + ": ", tasks.ErrInvalidPayload.Error() + ": "} {
		if len(msg) > len(prefix) && msg[:len(prefix)] == prefix {
			msg = msg[len(prefix):]
		}
		// "cachekeeper.yaml: invalid configuration: x" says "x" of the file.
		msg = strings.Replace(msg, ": "+prefix, ": ", 1)
	}
	return msg
}

// badFlagValue is urfave's message for a flag value that does not parse.
var badFlagValue = regexp.MustCompile(`^invalid value "(.*)" for flag -([a-z][a-z0-9-]*): (.*)$`)

// flagValueError rewrites urfave's `invalid value "5min" for flag -in: parse
// error` as `--in "5min" is not a duration: write it like 30s, 5m or 1h30m`,
// naming the flag as it is written and what it takes.
func flagValueError(flags []ucli.Flag, err error) string {
	m := badFlagValue.FindStringSubmatch(err.Error())
	if m == nil {
		return err.Error()
	}
	value, name := m[1], m[2]
	want := "a valid value"
	for _, f := range flags {
		if !slices.Contains(f.Names(), name) {
			continue
		}
		switch f.(type) {
		case *ucli.DurationFlag:
			want = "a duration: write it like 30s, 5m or 1h30m"
		case *ucli.IntFlag, *ucli.Int64Flag, *ucli.UintFlag, *ucli.Uint64Flag, *ucli.IntSliceFlag, *ucli.Int64SliceFlag:
			want = "a whole number, such as 100"
		case *ucli.Float64Flag:
			want = "a number, such as 0.5"
		case *ucli.BoolFlag:
			want = "true or false"
		case *ucli.TimestampFlag:
			want = "a time, such as 2026-12-01T09:00:00Z"
		}
	}
	return fmt.Sprintf("--%s %q is not %s", name, value, want)
}

// listenError says why a command could not serve HTTP on addr. An address
// another process holds is a runtime failure (exit 1: the configuration is
// right, the machine is busy); an address that cannot be one is a usage
// error.
func listenError(setting, addr string, err error) error {
	if errors.Is(err, syscall.EADDRINUSE) {
		return fmt.Errorf("%s %s is already in use by another process: stop it, or set another address", setting, addr)
	}
	if inner := errors.Unwrap(err); inner != nil {
		err = inner // httpapi's "metrics address ...:" prefix says what we say
	}
	return usagef("%s %q: %v", setting, addr, err)
}
