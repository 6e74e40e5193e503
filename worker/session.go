package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/cachekeeper/cachekeeper/config"
	"github.com/cachekeeper/cachekeeper/events"
	"github.com/cachekeeper/cachekeeper/internal/keys"
	"github.com/cachekeeper/cachekeeper/internal/scan"
	"github.com/cachekeeper/cachekeeper/session"
	"github.com/cachekeeper/cachekeeper/tasks"
	"github.com/redis/go-redis/v9"
)

// maxReportedKeys caps the sample of unparseable session keys in a report.
const maxReportedKeys = 10

// SessionCleanupReport is what a session:cleanup run did (or, in a dry run,
// would do); it is the job's result (JSON) and the fields of its log line.
type SessionCleanupReport struct {
	Pattern string `json:"pattern"`
	DryRun  bool   `json:"dry_run"`
	// Scanned is how many session hashes matched the pattern.
	Scanned int64 `json:"scanned"`
	// Expired is how many sessions were deleted: ExpiredByAge (created_at
	// older than max_age) plus ExpiredByIdle (last_seen, or created_at when
	// never seen, older than idle_timeout).
	Expired       int64 `json:"expired"`
	ExpiredByAge  int64 `json:"expired_by_age"`
	ExpiredByIdle int64 `json:"expired_by_idle"`
	// FixedTTL is how many sessions had no TTL and were given one.
	FixedTTL int64 `json:"fixed_ttl"`
	// IndexSetsScanned, IndexMembersPruned and IndexSetsDeleted describe
	// the per-user index sets: tokens whose session is gone are removed, and
	// a set left empty is gone.
	IndexSetsScanned   int64 `json:"index_sets_scanned"`
	IndexMembersPruned int64 `json:"index_members_pruned"`
	IndexSetsDeleted   int64 `json:"index_sets_deleted"`
	// Unparseable counts hashes without a user id or with a timestamp that
	// cannot be read; they are left exactly as they are. UnparseableKeys
	// lists the first few.
	Unparseable     int64    `json:"unparseable"`
	UnparseableKeys []string `json:"unparseable_keys,omitempty"`
	// ChangedMeanwhile counts sessions that were due for deletion but were
	// touched between the read and the delete; they are kept.
	ChangedMeanwhile int64 `json:"changed_meanwhile"`
	DurationMS       int64 `json:"duration_ms"`
}

// deleteIfUnchanged deletes a session only if its created_at and last_seen
// still hold the values the cleanup decided on, so a session used in the
// meantime is never deleted. KEYS[1] session. ARGV: created_at field and
// value, last_seen field ("" when not tracked) and value ("" when absent).
var deleteIfUnchanged = redis.NewScript(`
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then return 0 end
if ARGV[3] ~= '' then
  local seen = redis.call('HGET', KEYS[1], ARGV[3]) or ''
  if seen ~= ARGV[4] then return 0 end
end
return redis.call('DEL', KEYS[1])`)

// expireIfNone gives KEYS[1] a TTL of ARGV[1] ms only if it has none.
var expireIfNone = redis.NewScript(`
if redis.call('PTTL', KEYS[1]) == -1 then return redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return 0`)

// sremReport removes ARGV from the set KEYS[1] and returns {removed,
// whether the set still exists}.
var sremReport = redis.NewScript(`
local n = redis.call('SREM', KEYS[1], unpack(ARGV))
return {n, redis.call('EXISTS', KEYS[1])}`)

// deleteIfOwner deletes the session KEYS[1] only if its user id field
// ARGV[1] is ARGV[2], so an index never leads to another user's session.
var deleteIfOwner = redis.NewScript(`
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then return redis.call('DEL', KEYS[1]) end
return 0`)

// CleanupSessions runs session:cleanup: it scans the session hashes of cfg's
// layout (or args.Pattern), deletes those past max_age or idle_timeout,
// gives a TTL to those without one, then removes from every index set the
// tokens whose session is gone. Hashes it cannot read are reported and left
// alone. Every change is conditional on what was read, so it is safe to run
// while the application works, and running it twice changes nothing more.
// With args.DryRun it only counts. On error the report holds what was done
// so far.
func CleanupSessions(ctx context.Context, rdb redis.UniversalClient, cfg config.SessionsConfig, args tasks.SessionCleanupArgs) (SessionCleanupReport, error) {
	start := time.Now()
	c, err := newSessionCleanup(rdb, cfg, args)
	if err != nil {
		return SessionCleanupReport{}, err
	}
	done := func(err error) (SessionCleanupReport, error) {
		r := c.report()
		r.DurationMS = time.Since(start).Milliseconds()
		return r, err
	}
	maxRate := cfg.MaxKeysPerSecond
	if args.MaxKeysPerSecond > 0 {
		maxRate = args.MaxKeysPerSecond
	}
	opts := scan.Options{Match: c.rep.Pattern, Type: "hash", BatchSize: cfg.BatchSize, MaxKeysPerSecond: maxRate}
	if _, err := scan.Each(ctx, rdb, opts, c.sessions); err != nil {
		return done(fmt.Errorf("session cleanup %q: %w", c.rep.Pattern, err))
	}
	if c.layout.HasIndex() {
		opts.Match, opts.Type = c.layout.IndexPattern(), "set"
		if _, err := scan.Each(ctx, rdb, opts, c.indexes); err != nil {
			return done(fmt.Errorf("session cleanup, index sets %q: %w", opts.Match, err))
		}
	}
	return done(nil)
}

// sessionCleanup is the state of one CleanupSessions run.
type sessionCleanup struct {
	rdb         redis.UniversalClient
	cfg         config.SessionsConfig
	layout      keys.SessionLayout
	maxAge      time.Duration
	idleTimeout time.Duration
	dryRun      bool
	fields      []string

	mu  sync.Mutex // batches of different cluster masters may run at once
	rep SessionCleanupReport
}

func newSessionCleanup(rdb redis.UniversalClient, cfg config.SessionsConfig, args tasks.SessionCleanupArgs) (*sessionCleanup, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := args.Validate(); err != nil {
		return nil, err
	}
	layout, err := keys.NewSessionLayout(cfg.Key, cfg.Index)
	if err != nil {
		return nil, err
	}
	c := &sessionCleanup{rdb: rdb, cfg: cfg, layout: layout, maxAge: cfg.MaxAge, idleTimeout: cfg.IdleTimeout, dryRun: args.DryRun}
	if args.MaxAge > 0 {
		c.maxAge = time.Duration(args.MaxAge)
	}
	if args.IdleTimeout > 0 {
		c.idleTimeout = time.Duration(args.IdleTimeout)
	}
	c.fields = []string{cfg.UserIDField, cfg.CreatedAtField}
	if cfg.LastSeenField != "" {
		c.fields = append(c.fields, cfg.LastSeenField)
	}
	c.rep = SessionCleanupReport{Pattern: layout.SessionPattern(), DryRun: args.DryRun}
	if args.Pattern != "" {
		c.rep.Pattern = args.Pattern
	}
	return c, nil
}

func (c *sessionCleanup) report() SessionCleanupReport {
	c.mu.Lock()
	defer c.mu.Unlock()
	r := c.rep
	r.UnparseableKeys = append([]string(nil), c.rep.UnparseableKeys...)
	return r
}

// sessionState is what the cleanup read of one session.
type sessionState struct {
	key, userID, created, seen string
}

// sessions handles one batch of session keys.
func (c *sessionCleanup) sessions(ctx context.Context, batch []string) error {
	var now *redis.TimeCmd
	reads := make([]*redis.SliceCmd, len(batch))
	ttls := make([]*redis.DurationCmd, len(batch))
	_, err := c.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		now = p.Time(ctx)
		for i, k := range batch {
			reads[i] = p.HMGet(ctx, k, c.fields...)
			ttls[i] = p.PTTL(ctx, k)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("read sessions: %w", err)
	}
	// Delete calls first, then expire calls: results are read in that order.
	var calls, expires []scriptCall
	var deletes []pendingDelete
	var unparseable, noTTL int64
	var badKeys []string
	for i, key := range batch {
		if ttls[i].Val() == -2 {
			continue // gone since SCAN
		}
		st, created, lastActive, ok := c.parse(key, reads[i].Val())
		if !ok {
			unparseable++
			badKeys = append(badKeys, key)
			continue
		}
		age, idle := now.Val().Sub(created), now.Val().Sub(lastActive)
		byAge := c.maxAge > 0 && age > c.maxAge
		byIdle := c.idleTimeout > 0 && idle > c.idleTimeout
		switch {
		case byAge || byIdle:
			deletes = append(deletes, pendingDelete{sessionState: st, byAge: byAge})
			calls = append(calls, scriptCall{script: deleteIfUnchanged, keys: []string{key},
				args: []any{c.cfg.CreatedAtField, st.created, c.cfg.LastSeenField, st.seen}})
		case ttls[i].Val() == -1:
			noTTL++
			ttl := c.cfg.TTL
			if c.maxAge > 0 {
				ttl = min(ttl, c.maxAge-age)
			}
			if c.idleTimeout > 0 {
				ttl = min(ttl, c.idleTimeout-idle)
			}
			ttl = max(ttl, time.Second)
			expires = append(expires, scriptCall{script: expireIfNone, keys: []string{key}, args: []any{ttl.Milliseconds()}})
		}
	}
	calls = append(calls, expires...)

	var changed, fixed int64
	deleted := deletes
	if !c.dryRun && len(calls) > 0 {
		cmds, err := evalAll(ctx, c.rdb, calls)
		if err != nil {
			return fmt.Errorf("expire sessions: %w", err)
		}
		deleted = nil
		for i, cmd := range cmds[:len(deletes)] {
			n, err := cmd.Int64()
			if err != nil {
				return fmt.Errorf("delete session %s: %w", deletes[i].key, err)
			}
			if n == 1 {
				deleted = append(deleted, deletes[i])
			} else {
				changed++
			}
		}
		for i, cmd := range cmds[len(deletes):] {
			n, err := cmd.Int64()
			if err != nil {
				return fmt.Errorf("give session %s a TTL: %w", calls[len(deletes)+i].keys[0], err)
			}
			fixed += n
		}
		if err := c.unindex(ctx, deleted); err != nil {
			return err
		}
	} else if c.dryRun {
		fixed = noTTL
	}

	c.mu.Lock()
	defer c.mu.Unlock()
	c.rep.Scanned += int64(len(batch))
	for _, d := range deleted {
		c.rep.Expired++
		if d.byAge {
			c.rep.ExpiredByAge++
		} else {
			c.rep.ExpiredByIdle++
		}
	}
	c.rep.FixedTTL += fixed
	c.rep.ChangedMeanwhile += changed
	c.rep.Unparseable += unparseable
	for _, k := range badKeys {
		if len(c.rep.UnparseableKeys) < maxReportedKeys {
			c.rep.UnparseableKeys = append(c.rep.UnparseableKeys, k)
		}
	}
	return nil
}

// pendingDelete is a session due for deletion and the rule that says so
// (max_age wins when both apply).
type pendingDelete struct {
	sessionState
	byAge bool
}

// parse reads one HMGET reply of an existing hash. ok is false when the
// session cannot be trusted: no user id, or a created_at or last_seen that
// session.ParseTime does not read.
func (c *sessionCleanup) parse(key string, vals []any) (st sessionState, created, lastActive time.Time, ok bool) {
	str := func(i int) (string, bool) {
		if i >= len(vals) || vals[i] == nil {
			return "", false
		}
		s, isStr := vals[i].(string)
		return s, isStr
	}
	userID, _ := str(0)
	createdStr, hasCreated := str(1)
	seenStr, hasSeen := str(2)
	st = sessionState{key: key, userID: userID, created: createdStr, seen: seenStr}
	if userID == "" || !hasCreated {
		return st, time.Time{}, time.Time{}, false
	}
	created, err := session.ParseTime(createdStr)
	if err != nil {
		return st, time.Time{}, time.Time{}, false
	}
	lastActive = created
	if hasSeen {
		if lastActive, err = session.ParseTime(seenStr); err != nil {
			return st, time.Time{}, time.Time{}, false
		}
	}
	return st, created, lastActive, true
}

// unindex removes the tokens of deleted sessions from their users' index
// sets.
func (c *sessionCleanup) unindex(ctx context.Context, deleted []pendingDelete) error {
	if !c.layout.HasIndex() || len(deleted) == 0 {
		return nil
	}
	_, err := c.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, st := range deleted {
			if tok, ok := c.layout.Token(st.key); ok {
				p.SRem(ctx, c.layout.Index(st.userID), tok)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("remove deleted sessions from their index: %w", err)
	}
	return nil
}

// indexes handles one batch of index sets: tokens whose session hash is
// gone are removed. A token is only ever added after its session is written
// (session.Store.Create), so a missing session is a dead token, not a
// session being created.
func (c *sessionCleanup) indexes(ctx context.Context, batch []string) error {
	members := make([]*redis.StringSliceCmd, len(batch))
	_, err := c.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, k := range batch {
			members[i] = p.SMembers(ctx, k)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("read index sets: %w", err)
	}
	type probe struct {
		set, token string
		exists     *redis.IntCmd
	}
	var probes []probe
	_, err = c.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, k := range batch {
			for _, tok := range members[i].Val() {
				probes = append(probes, probe{set: k, token: tok, exists: p.Exists(ctx, c.layout.Session(tok))})
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("check indexed sessions: %w", err)
	}
	dead := map[string][]any{}
	var order []string
	for _, pr := range probes {
		if pr.exists.Val() == 0 {
			if _, seen := dead[pr.set]; !seen {
				order = append(order, pr.set)
			}
			dead[pr.set] = append(dead[pr.set], pr.token)
		}
	}
	var pruned, setsDeleted int64
	if c.dryRun {
		for i, k := range batch {
			pruned += int64(len(dead[k]))
			if len(dead[k]) > 0 && len(dead[k]) == len(members[i].Val()) {
				setsDeleted++
			}
		}
	} else {
		var calls []scriptCall
		for _, set := range order {
			toks := dead[set]
			for len(toks) > 0 { // unpack() in Lua takes a bounded number of values
				n := min(len(toks), 1000)
				calls = append(calls, scriptCall{script: sremReport, keys: []string{set}, args: toks[:n]})
				toks = toks[n:]
			}
		}
		cmds, err := evalAll(ctx, c.rdb, calls)
		if err != nil {
			return fmt.Errorf("prune index sets: %w", err)
		}
		gone := map[string]bool{}
		for i, cmd := range cmds {
			v, err := cmd.Int64Slice()
			if err != nil || len(v) != 2 {
				return fmt.Errorf("prune index set %s: %v", calls[i].keys[0], err)
			}
			pruned += v[0]
			if v[1] == 0 && !gone[calls[i].keys[0]] {
				gone[calls[i].keys[0]] = true
				setsDeleted++
			}
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.rep.IndexSetsScanned += int64(len(batch))
	c.rep.IndexMembersPruned += pruned
	c.rep.IndexSetsDeleted += setsDeleted
	return nil
}

// SessionRevokeReport is what a session:revoke run did.
type SessionRevokeReport struct {
	UserID string `json:"user_id"`
	// Via is "index" when the user's index set listed the sessions, "scan"
	// when every session hash was read instead.
	Via string `json:"via"`
	// Deleted is how many sessions of the user were deleted.
	Deleted int64 `json:"deleted"`
	// Scanned is how many session hashes a scan read (0 via the index).
	Scanned int64 `json:"scanned"`
	// IndexMembersRemoved is how many tokens left the user's index set.
	IndexMembersRemoved int64 `json:"index_members_removed"`
	DurationMS          int64 `json:"duration_ms"`
}

// RevokeSessions deletes every session of userID: through the user's index
// set when there is one (each token's session is deleted only if it belongs
// to userID, and the tokens read leave the index, which Redis drops once
// empty); by scanning every session hash and reading its user id when there
// is no index set or scanAll is set. A session created during the
// revocation may survive it. Running it twice deletes nothing more.
func RevokeSessions(ctx context.Context, rdb redis.UniversalClient, cfg config.SessionsConfig, userID string, scanAll bool) (rep SessionRevokeReport, err error) {
	start := time.Now()
	rep = SessionRevokeReport{UserID: userID, Via: "index"}
	defer func() { rep.DurationMS = time.Since(start).Milliseconds() }() // named results: seen by the caller
	if err := (tasks.SessionRevokeArgs{UserID: userID}).Validate(); err != nil {
		return rep, err
	}
	if err := cfg.Validate(); err != nil {
		return rep, err
	}
	layout, err := keys.NewSessionLayout(cfg.Key, cfg.Index)
	if err != nil {
		return rep, err
	}
	var tokens []string
	if layout.HasIndex() {
		if tokens, err = rdb.SMembers(ctx, layout.Index(userID)).Result(); err != nil {
			return rep, fmt.Errorf("read index %s: %w", layout.Index(userID), err)
		}
	}
	if len(tokens) > 0 {
		calls := make([]scriptCall, len(tokens))
		for i, tok := range tokens {
			calls[i] = scriptCall{script: deleteIfOwner, keys: []string{layout.Session(tok)}, args: []any{cfg.UserIDField, userID}}
		}
		n, err := countDeleted(ctx, rdb, calls)
		rep.Deleted += n
		if err != nil {
			return rep, err
		}
		idx := layout.Index(userID)
		for lo := 0; lo < len(tokens); lo += 1000 {
			members := make([]any, 0, min(1000, len(tokens)-lo))
			for _, tok := range tokens[lo:min(lo+1000, len(tokens))] {
				members = append(members, tok)
			}
			n, err := rdb.SRem(ctx, idx, members...).Result()
			if err != nil {
				return rep, fmt.Errorf("remove tokens from index %s: %w", idx, err)
			}
			rep.IndexMembersRemoved += n
		}
	}
	if len(tokens) > 0 && !scanAll {
		return rep, nil
	}

	rep.Via = "scan"
	if len(tokens) > 0 {
		rep.Via = "index+scan"
	}
	opts := scan.Options{Match: layout.SessionPattern(), Type: "hash", BatchSize: cfg.BatchSize, MaxKeysPerSecond: cfg.MaxKeysPerSecond}
	var mu sync.Mutex
	scanned, err := scan.Each(ctx, rdb, opts, func(ctx context.Context, batch []string) error {
		owners := make([]*redis.StringCmd, len(batch))
		_, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i, k := range batch {
				owners[i] = p.HGet(ctx, k, cfg.UserIDField)
			}
			return nil
		})
		if err != nil && !errors.Is(err, redis.Nil) {
			return fmt.Errorf("read session owners: %w", err)
		}
		var calls []scriptCall
		var toks []any
		for i, k := range batch {
			if owners[i].Val() != userID {
				continue
			}
			calls = append(calls, scriptCall{script: deleteIfOwner, keys: []string{k}, args: []any{cfg.UserIDField, userID}})
			if tok, ok := layout.Token(k); ok {
				toks = append(toks, tok)
			}
		}
		n, err := countDeleted(ctx, rdb, calls)
		var removed int64
		if err == nil && len(toks) > 0 && layout.HasIndex() {
			removed, err = rdb.SRem(ctx, layout.Index(userID), toks...).Result()
		}
		mu.Lock()
		rep.Deleted += n
		rep.IndexMembersRemoved += removed
		mu.Unlock()
		return err
	})
	rep.Scanned = scanned
	if err != nil {
		return rep, fmt.Errorf("revoke sessions of %q by scanning %q: %w", userID, opts.Match, err)
	}
	return rep, nil
}

// countDeleted runs delete scripts and counts the keys they deleted.
func countDeleted(ctx context.Context, rdb redis.UniversalClient, calls []scriptCall) (int64, error) {
	if len(calls) == 0 {
		return 0, nil
	}
	cmds, err := evalAll(ctx, rdb, calls)
	if err != nil {
		return 0, fmt.Errorf("delete sessions: %w", err)
	}
	var n int64
	for i, cmd := range cmds {
		v, err := cmd.Int64()
		if err != nil {
			return n, fmt.Errorf("delete session %s: %w", calls[i].keys[0], err)
		}
		n += v
	}
	return n, nil
}

// sessionJobs holds what the session handlers need.
type sessionJobs struct {
	rdb    redis.UniversalClient
	cfg    config.SessionsConfig
	events *events.Publisher
	logger *slog.Logger
	pace   config.PaceConfig
}

// registerSessions registers session:cleanup and session:revoke.
func (w *Worker) registerSessions() error {
	if err := w.cfg.Sessions.Validate(); err != nil {
		return err
	}
	j := &sessionJobs{rdb: w.deps.Redis, cfg: w.cfg.Sessions, events: w.events, logger: w.logger, pace: w.cfg.Pace}
	Handle(w.mux, j.handleCleanup)
	Handle(w.mux, j.handleRevoke)
	w.kinds = append(w.kinds, tasks.KindSessionCleanup, tasks.KindSessionRevoke)
	return nil
}

func (j *sessionJobs) handleCleanup(ctx context.Context, job *Job[tasks.SessionCleanupArgs]) error {
	ctx, pacer := paced(ctx, j.rdb, j.pace)
	defer pacer.Stop()
	rep, err := CleanupSessions(ctx, j.rdb, j.cfg, *job.Args)
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
	rep, err := RevokeSessions(ctx, j.rdb, j.cfg, job.Args.UserID, job.Args.Scan)
	attrs := []slog.Attr{slog.String("user_id", rep.UserID), slog.String("via", rep.Via),
		slog.Int64("deleted", rep.Deleted), slog.Int64("scanned", rep.Scanned),
		slog.Int64("index_members_removed", rep.IndexMembersRemoved), slog.Int64("duration_ms", rep.DurationMS)}
	if err != nil {
		j.logger.LogAttrs(ctx, slog.LevelWarn, "session revoke stopped", append(attrs, slog.String("error", err.Error()))...)
		return err
	}
	// Published on every run, retries included: subscribers drop whatever
	// they hold for the user, which is idempotent.
	ev := events.Event{Type: events.TypeSessionRevoked, UserID: job.Args.UserID, KeyCount: int(rep.Deleted), TaskID: job.ID}
	if err := j.events.Publish(ctx, ev); err != nil {
		return fmt.Errorf("session revoke of %q: sessions deleted, event not published: %w", job.Args.UserID, err)
	}
	j.logger.LogAttrs(ctx, slog.LevelInfo, "sessions revoked", attrs...)
	writeResult(ctx, j.logger, job.Task.ResultWriter(), rep)
	return nil
}
