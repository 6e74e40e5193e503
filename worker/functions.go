package worker

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/cachekeeper/cachekeeper/internal/redisx"
)

// loadFunctions loads the read protocol's function library
// (docs/read-protocol.md) on every master, so that applications in any
// language can call it by name. A server without functions (Redis 6,
// miniredis) or a refusal (an ACL without FUNCTION) is logged, not fatal:
// the Go read path falls back to EVALSHA, and the worker's own jobs do not
// need the library.
func (w *Worker) loadFunctions(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	res, err := redisx.LoadLibrary(ctx, w.deps.Redis)
	switch {
	case errors.Is(err, redisx.ErrNoFunctions):
		w.logger.LogAttrs(ctx, slog.LevelInfo, "Redis has no functions; applications call the read protocol's scripts by EVALSHA",
			slog.String("library", redisx.LibraryName))
	case err != nil:
		w.logger.LogAttrs(ctx, slog.LevelWarn, "could not load the read protocol's function library; applications calling it by name will get \"Function not found\"",
			slog.String("library", redisx.LibraryName), slog.Any("error", err))
	default:
		for _, r := range res {
			w.logger.LogAttrs(ctx, slog.LevelDebug, "function library",
				slog.String("library", redisx.LibraryName), slog.String("addr", r.Addr), slog.String("action", r.Action),
				slog.Int64("revision_before", r.Revision), slog.Int("revision", redisx.LibraryRevision))
		}
	}
}
