// Package redisacl checks, before a worker starts, that its Redis user may
// run what the worker needs: the script commands on the queue, cache and
// internal keys, PUBLISH on the events channel, SUBSCRIBE on asynq's cancel
// channel, SCAN. A user without one of them otherwise finds out late (a
// worker that starts and fails every job, an invalidation retried ten times
// because its event could not be published).
//
// Each need is checked with ACL DRYRUN (Redis 7) as the connected user;
// when the user may not run ACL DRYRUN, with the command queued inside
// MULTI and discarded (Redis checks permissions when it queues a command),
// so nothing is run either way.
package redisacl

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/cachekeeper/cachekeeper/config"
	"github.com/cachekeeper/cachekeeper/internal/keys"
)

// ErrUnchecked means the permissions could not be checked (Redis before 7
// without ACL DRYRUN, and MULTI refused); the caller goes on.
var ErrUnchecked = errors.New("Redis permissions not checked")

// Need is one permission the worker needs.
type Need struct {
	// Why says what it is for.
	Why string
	// Args is a command that needs it (never run: checked only).
	Args []string
	// Key is Args' key (the node to ask on a cluster), "" when none.
	Key string
	// Command, Keys and Channel are the ACL rule pieces that grant it.
	Command, Keys, Channel string
}

// unknownSHA is a script digest no server holds: EVALSHA of it would only
// answer NOSCRIPT.
const unknownSHA = "0000000000000000000000000000000000000000"

// Needs lists what a worker with cfg needs.
func Needs(cfg config.Config) []Need {
	var needs []Need
	script := func(why, key, pattern string) {
		needs = append(needs,
			Need{Why: why, Args: []string{"evalsha", unknownSHA, "1", key}, Key: key, Command: "+evalsha", Keys: "~" + pattern},
			Need{Why: why, Args: []string{"eval", "return 1", "1", key}, Key: key, Command: "+eval", Keys: "~" + pattern})
	}
	for _, q := range cfg.QueueNames() {
		script("the job queues", keys.AsynqPending(q), keys.AsynqPrefix+"*")
	}
	needs = append(needs, Need{Why: "cancelling running jobs", Args: []string{"subscribe", keys.AsynqPrefix + "cancel"},
		Command: "+subscribe", Channel: "&" + keys.AsynqPrefix + "cancel"})
	script("fences, checkpoints and tags", cfg.KeyPrefix+"probe", cfg.KeyPrefix+"*")
	if !cfg.Inbox.Disabled && cfg.Inbox.Key != "" && !strings.HasPrefix(cfg.Inbox.Key, cfg.KeyPrefix) {
		script("the inbox", keys.Processing(cfg.Inbox.Key), keys.SameSlot(cfg.Inbox.Key)+"*")
		script("the inbox", cfg.Inbox.Key, cfg.Inbox.Key)
	}
	for _, name := range cfg.CacheNames() {
		t, err := keys.ParseTemplate(cfg.Caches[name].Key)
		if err != nil {
			continue // config validation reports it
		}
		script("the cache "+name, t.RenderOne("1"), t.Pattern())
	}
	if !cfg.Events.Disabled && cfg.Events.Channel != "" {
		needs = append(needs, Need{Why: "cache events", Args: []string{"publish", cfg.Events.Channel, "x"},
			Command: "+publish", Channel: "&" + cfg.Events.Channel})
	}
	needs = append(needs, Need{Why: "pattern invalidation and maintenance", Args: []string{"scan", "0", "count", "1"}, Command: "+scan"},
		// Scripts and the recoverer read the server's clock (a script's own
		// commands are checked only when it runs, so this one is named here).
		Need{Why: "fences and dead-job recovery (the server's clock)", Args: []string{"time"}, Command: "+time"})
	return needs
}

// Missing is a need the user lacks, with Redis' reason.
type Missing struct {
	Need
	Reply string
}

// Report is the outcome of Check.
type Report struct {
	User    string
	Method  string // "ACL DRYRUN" or "MULTI"
	Checked int
	Missing []Missing
}

// Err returns nil when nothing is missing, else one line naming what is
// missing and the ACL rule that grants it.
func (r Report) Err() error {
	if len(r.Missing) == 0 {
		return nil
	}
	var what []string
	seen := map[string]bool{}
	var rule []string
	for _, m := range r.Missing {
		piece := m.rulePiece()
		if seen[piece] {
			continue
		}
		seen[piece] = true
		rule = append(rule, piece)
		what = append(what, fmt.Sprintf("%s (%s)", piece, m.Why))
	}
	sort.Strings(rule)
	return fmt.Errorf("Redis user %q lacks permissions the worker needs: %s; grant them with: ACL SETUSER %s %s",
		r.User, strings.Join(what, ", "), r.User, strings.Join(rule, " "))
}

// rulePiece is the part of an ACL rule that grants m, read from Redis'
// reply ("... no permissions to run the 'x' command", "... access the 'k'
// key", "... access the 'c' channel").
func (m Missing) rulePiece() string {
	reply := strings.ToLower(m.Reply)
	switch {
	case strings.Contains(reply, "channel") && m.Channel != "":
		return m.Channel
	case strings.Contains(reply, " key") && m.Keys != "":
		return m.Keys
	}
	return m.Command
}

// Check asks Redis, as rdb's user, for each need.
func Check(ctx context.Context, rdb redis.UniversalClient, needs []Need) (Report, error) {
	rep := Report{User: userOf(rdb)}
	who, whoErr := rdb.Do(ctx, "ACL", "WHOAMI").Text()
	if whoErr == nil {
		rep.User = who
		rep.Method = "ACL DRYRUN"
		for i, n := range needs {
			args := []any{"ACL", "DRYRUN", rep.User}
			for _, a := range n.Args {
				args = append(args, a)
			}
			reply, err := rdb.Do(ctx, args...).Text()
			if err != nil {
				if i == 0 {
					break // not for this user, or this Redis: try MULTI
				}
				return rep, fmt.Errorf("ACL DRYRUN: %w", err)
			}
			rep.Checked++
			if reply != "OK" {
				rep.Missing = append(rep.Missing, Missing{Need: n, Reply: reply})
			}
		}
		if rep.Checked == len(needs) {
			return rep, nil
		}
	}
	rep.Method = "MULTI"
	for _, n := range needs {
		reply, err := queued(ctx, rdb, n)
		if err != nil {
			return rep, fmt.Errorf("%w: ACL DRYRUN unavailable and MULTI failed: %v", ErrUnchecked, err)
		}
		rep.Checked++
		if reply != "" {
			rep.Missing = append(rep.Missing, Missing{Need: n, Reply: reply})
		}
	}
	return rep, nil
}

// queued sends MULTI, the need's command and DISCARD on one connection of
// the node that serves its key, and returns Redis' refusal ("" when the
// command was queued, so permitted).
func queued(ctx context.Context, rdb redis.UniversalClient, n Need) (string, error) {
	var node *redis.Client
	switch c := rdb.(type) {
	case *redis.Client:
		node = c
	case *redis.ClusterClient:
		var err error
		key := n.Key
		if key == "" {
			key = "x"
		}
		if node, err = c.MasterForKey(ctx, key); err != nil {
			return "", err
		}
	default:
		return "", fmt.Errorf("unsupported client %T", rdb)
	}
	conn := node.Conn()
	defer conn.Close()
	if err := conn.Do(ctx, "MULTI").Err(); err != nil {
		return "", err
	}
	args := make([]any, len(n.Args))
	for i, a := range n.Args {
		args[i] = a
	}
	qerr := conn.Do(ctx, args...).Err()
	if err := conn.Do(ctx, "DISCARD").Err(); err != nil {
		return "", err
	}
	// Redis checks permissions before anything else it refuses inside a
	// transaction, so only NOPERM says the permission is missing.
	if qerr != nil && strings.HasPrefix(qerr.Error(), "NOPERM") {
		return qerr.Error(), nil
	}
	return "", nil
}

// userOf is the user rdb logs in as (when ACL WHOAMI is not allowed).
func userOf(rdb redis.UniversalClient) string {
	var u string
	switch c := rdb.(type) {
	case *redis.Client:
		u = c.Options().Username
	case *redis.ClusterClient:
		u = c.Options().Username
	}
	if u == "" {
		u = "default"
	}
	return u
}
