package session

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/cachekeeper/cachekeeper/config"
	"github.com/cachekeeper/cachekeeper/internal/keys"
	"github.com/cachekeeper/cachekeeper/internal/redisx"
	"github.com/cachekeeper/cachekeeper/internal/scan"
	"github.com/cachekeeper/cachekeeper/tasks"
)

// maxReportedKeys caps the sample of unparseable session keys in a report.
const maxReportedKeys = 10

// CleanupReport is what a session:cleanup run did (or, in a dry run,
// would do); it is the job's result (JSON) and the fields of its log line.
type CleanupReport struct {
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

// Cleanup is the session:cleanup job: it scans the session hashes of cfg's
// layout (or args.Pattern), deletes those past max_age or idle_timeout,
// gives a TTL to those without one, then removes from every index set the
// tokens whose session is gone. Hashes it cannot read are reported and left
// alone. Every change is conditional on what was read, so it is safe to run
// while the application works, and running it twice changes nothing more.
// With args.DryRun it only counts. On error the report holds what was done
// so far.
func Cleanup(ctx context.Context, rdb redis.UniversalClient, cfg config.SessionsConfig, args tasks.SessionCleanupArgs) (CleanupReport, error) {
	return CleanupPaced(ctx, rdb, cfg, args, nil)
}

// Pacer paces a maintenance walk; the worker passes the pacer of its `pace:`
// settings. Batch is the size of the next batch (0: the configured one),
// Wait blocks until it may start, Observe is told how many keys it carried
// and how long it took; every Wait that returns nil is followed by one
// Observe.
type Pacer interface {
	Batch() int
	Wait(ctx context.Context) error
	Observe(keys int, took time.Duration)
}

// CleanupPaced is Cleanup with its batches paced by p (nil: unpaced).
func CleanupPaced(ctx context.Context, rdb redis.UniversalClient, cfg config.SessionsConfig, args tasks.SessionCleanupArgs, p Pacer) (CleanupReport, error) {
	start := time.Now()
	c, err := newSessionCleanup(rdb, cfg, args)
	if err != nil {
		return CleanupReport{}, err
	}
	done := func(err error) (CleanupReport, error) {
		r := c.report()
		r.DurationMS = time.Since(start).Milliseconds()
		return r, err
	}
	maxRate := cfg.MaxKeysPerSecond
	if args.MaxKeysPerSecond > 0 {
		maxRate = args.MaxKeysPerSecond
	}
	opts := scan.Options{Match: c.rep.Pattern, Type: "hash", BatchSize: cfg.BatchSize, MaxKeysPerSecond: maxRate, Pacer: p}
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

// sessionCleanup is the state of one Cleanup run.
type sessionCleanup struct {
	rdb         redis.UniversalClient
	cfg         config.SessionsConfig
	layout      keys.SessionLayout
	maxAge      time.Duration
	idleTimeout time.Duration
	dryRun      bool
	fields      []string

	mu  sync.Mutex // batches of different cluster masters may run at once
	rep CleanupReport
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
	c.rep = CleanupReport{Pattern: layout.SessionPattern(), DryRun: args.DryRun}
	if args.Pattern != "" {
		c.rep.Pattern = args.Pattern
	}
	return c, nil
}

func (c *sessionCleanup) report() CleanupReport {
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
	var calls, expires []redisx.Call
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
			calls = append(calls, redisx.Call{Script: redisx.SessionDeleteIfUnchanged, Keys: []string{key},
				Args: []any{c.cfg.CreatedAtField, st.created, c.cfg.LastSeenField, st.seen}})
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
			expires = append(expires, redisx.Call{Script: redisx.ExpireIfNone, Keys: []string{key}, Args: []any{ttl.Milliseconds()}})
		}
	}
	calls = append(calls, expires...)

	var changed, fixed int64
	deleted := deletes
	if !c.dryRun && len(calls) > 0 {
		cmds, err := redisx.EvalAll(ctx, c.rdb, calls)
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
				return fmt.Errorf("give session %s a TTL: %w", calls[len(deletes)+i].Keys[0], err)
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
// ParseTime does not read.
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
	created, err := ParseTime(createdStr)
	if err != nil {
		return st, time.Time{}, time.Time{}, false
	}
	lastActive = created
	if hasSeen {
		if lastActive, err = ParseTime(seenStr); err != nil {
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
		var calls []redisx.Call
		for _, set := range order {
			toks := dead[set]
			for len(toks) > 0 { // unpack() in Lua takes a bounded number of values
				n := min(len(toks), 1000)
				calls = append(calls, redisx.Call{Script: redisx.SRemReport, Keys: []string{set}, Args: toks[:n]})
				toks = toks[n:]
			}
		}
		cmds, err := redisx.EvalAll(ctx, c.rdb, calls)
		if err != nil {
			return fmt.Errorf("prune index sets: %w", err)
		}
		gone := map[string]bool{}
		for i, cmd := range cmds {
			v, err := cmd.Int64Slice()
			if err != nil || len(v) != 2 {
				return fmt.Errorf("prune index set %s: %v", calls[i].Keys[0], err)
			}
			pruned += v[0]
			if v[1] == 0 && !gone[calls[i].Keys[0]] {
				gone[calls[i].Keys[0]] = true
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
