package session

import (
	"context"
	"errors"
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

// RevokeReport is what a session:revoke run did.
type RevokeReport struct {
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

// Revoke is the session:revoke job: it deletes every session of userID: through the user's index
// set when there is one (each token's session is deleted only if it belongs
// to userID, and the tokens read leave the index, which Redis drops once
// empty); by scanning every session hash and reading its user id when there
// is no index set or scanAll is set. A session created during the
// revocation may survive it. Running it twice deletes nothing more.
func Revoke(ctx context.Context, rdb redis.UniversalClient, cfg config.SessionsConfig, userID string, scanAll bool) (rep RevokeReport, err error) {
	start := time.Now()
	rep = RevokeReport{UserID: userID, Via: "index"}
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
		calls := make([]redisx.Call, len(tokens))
		for i, tok := range tokens {
			calls[i] = redisx.Call{Script: redisx.SessionDeleteIfOwner, Keys: []string{layout.Session(tok)}, Args: []any{cfg.UserIDField, userID}}
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
		var calls []redisx.Call
		var toks []any
		for i, k := range batch {
			if owners[i].Val() != userID {
				continue
			}
			calls = append(calls, redisx.Call{Script: redisx.SessionDeleteIfOwner, Keys: []string{k}, Args: []any{cfg.UserIDField, userID}})
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
func countDeleted(ctx context.Context, rdb redis.UniversalClient, calls []redisx.Call) (int64, error) {
	if len(calls) == 0 {
		return 0, nil
	}
	cmds, err := redisx.EvalAll(ctx, rdb, calls)
	if err != nil {
		return 0, fmt.Errorf("delete sessions: %w", err)
	}
	var n int64
	for i, cmd := range cmds {
		v, err := cmd.Int64()
		if err != nil {
			return n, fmt.Errorf("delete session %s: %w", calls[i].Keys[0], err)
		}
		n += v
	}
	return n, nil
}
