package cli

import (
	"errors"
	"fmt"
	"strings"

	"github.com/cachekeeper/cachekeeper/config"
	"github.com/cachekeeper/cachekeeper/tasks"
	"github.com/cachekeeper/cachekeeper/worker"
)

// Exit codes.
const (
	ExitOK      = 0
	ExitRuntime = 1 // the command ran and failed (Redis down, job failed...)
	ExitUsage   = 2 // bad flags, arguments or configuration: nothing was done
)

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
	case errors.Is(err, ErrUsage), errors.Is(err, config.ErrInvalid), errors.Is(err, tasks.ErrInvalidPayload), errors.Is(err, worker.ErrInvalidCache):
		return ExitUsage
	}
	return ExitRuntime
}

// message renders err as the one line printed on failure.
func message(err error) string {
	msg := err.Error()
	for _, prefix := range []string{ErrUsage.Error() + ": ", config.ErrInvalid.Error() + ": ", tasks.ErrInvalidPayload.Error() + ": "} {
		if len(msg) > len(prefix) && msg[:len(prefix)] == prefix {
			msg = msg[len(prefix):]
		}
		// "cachekeeper.yaml: invalid configuration: x" says "x" of the file.
		msg = strings.Replace(msg, ": "+prefix, ": ", 1)
	}
	return msg
}
