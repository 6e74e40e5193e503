package worker

import (
	"context"
	"log/slog"

	"github.com/redis/go-redis/v9"

	"github.com/cachekeeper/cachekeeper/config"
	"github.com/cachekeeper/cachekeeper/events"
	"github.com/cachekeeper/cachekeeper/session"
	"github.com/cachekeeper/cachekeeper/tasks"
)

// sessionJobs holds what the session handlers need.
type sessionJobs struct {
	rdb    redis.UniversalClient
	cfg    config.SessionsConfig
	send   *eventSender
	logger *slog.Logger
	pace   config.PaceConfig
}

// registerSessions registers session:cleanup and session:revoke.
func (w *Worker) registerSessions() error {
	if err := w.cfg.Sessions.Validate(); err != nil {
		return err
	}
	j := &sessionJobs{rdb: w.deps.Redis, cfg: w.cfg.Sessions, send: w.send, logger: w.logger, pace: w.cfg.Pace}
	Handle(w.mux, j.handleCleanup)
	Handle(w.mux, j.handleRevoke)
	w.kinds = append(w.kinds, tasks.KindSessionCleanup, tasks.KindSessionRevoke)
	return nil
}

func (j *sessionJobs) handleCleanup(ctx context.Context, job *Job[tasks.SessionCleanupArgs]) error {
	pacer := paced(j.rdb, j.pace)
	defer pacer.Stop()
	rep, err := session.CleanupPaced(ctx, j.rdb, j.cfg, *job.Args, pacer)
	attrs := []slog.Attr{slog.String("pattern", rep.Pattern), slog.Bool("dry_run", rep.DryRun),
		slog.Int64("scanned", rep.Scanned), slog.Int64("expired", rep.Expired),
		slog.Int64("expired_by_age", rep.ExpiredByAge), slog.Int64("expired_by_idle", rep.ExpiredByIdle),
		slog.Int64("fixed_ttl", rep.FixedTTL), slog.Int64("index_sets_scanned", rep.IndexSetsScanned),
		slog.Int64("index_members_pruned", rep.IndexMembersPruned), slog.Int64("index_sets_deleted", rep.IndexSetsDeleted),
		slog.Int64("unparseable", rep.Unparseable), slog.Int64("changed_meanwhile", rep.ChangedMeanwhile),
		slog.Int64("duration_ms", rep.DurationMS)}
	if len(rep.UnparseableKeys) > 0 {
		attrs = append(attrs, slog.Any("unparseable_keys", rep.UnparseableKeys))
	}
	if err != nil {
		j.logger.LogAttrs(ctx, slog.LevelWarn, "session cleanup stopped", append(attrs, slog.String("error", err.Error()))...)
		return err
	}
	j.logger.LogAttrs(ctx, slog.LevelInfo, "session cleanup done", attrs...)
	writeResult(ctx, j.logger, job.Task.ResultWriter(), withPace(rep, pacer))
	return nil
}

func (j *sessionJobs) handleRevoke(ctx context.Context, job *Job[tasks.SessionRevokeArgs]) error {
	rep, err := session.Revoke(ctx, j.rdb, j.cfg, job.Args.UserID, job.Args.Scan)
	attrs := []slog.Attr{slog.String("user_id", rep.UserID), slog.String("via", rep.Via),
		slog.Int64("deleted", rep.Deleted), slog.Int64("scanned", rep.Scanned),
		slog.Int64("index_members_removed", rep.IndexMembersRemoved), slog.Int64("duration_ms", rep.DurationMS)}
	if err != nil {
		j.logger.LogAttrs(ctx, slog.LevelWarn, "session revoke stopped", append(attrs, slog.String("error", err.Error()))...)
		return err
	}
	// Published on every run, retries included: subscribers drop whatever
	// they hold for the user, which is idempotent.
	j.send.publish(ctx, tasks.KindSessionRevoke, events.Event{Type: events.TypeSessionRevoked, UserID: job.Args.UserID, KeyCount: int(rep.Deleted), TaskID: job.ID})
	j.logger.LogAttrs(ctx, slog.LevelInfo, "sessions revoked", attrs...)
	writeResult(ctx, j.logger, job.Task.ResultWriter(), rep)
	return nil
}
