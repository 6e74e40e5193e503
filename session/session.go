// Package session stores web sessions in Redis in the layout of the FastAPI
// guide that cachekeeper's session jobs maintain: one hash per session,
// "session:{token}", holding user_id, created_at (ISO 8601, UTC) and
// last_seen, with a TTL; and one set of tokens per user,
// "user:{user_id}:sessions", so that every session of a user can be found.
//
// Unlike the guide's two-call HSET then EXPIRE, Create writes the hash and
// its TTL in one MULTI, so a crash between the two cannot leave an immortal
// session. The session is written before its token enters the index, so the
// cleanup job, which drops index tokens whose session is gone, never drops a
// token of a session being created. Sessions written by other code (no TTL,
// dead tokens in the index) are repaired by the session:cleanup job.
//
// The package holds the whole concept: Store for applications (built from
// cachekeeper's configuration with NewFromConfig, so the application and
// the worker share one file), and the maintenance the worker runs as jobs,
// Cleanup (session:cleanup) and Revoke (session:revoke), which can also be
// called directly.
package session

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/cachekeeper/cachekeeper/config"
	"github.com/cachekeeper/cachekeeper/internal/keys"
	"github.com/cachekeeper/cachekeeper/internal/redisx"
)

// Errors callers branch on.
var (
	// ErrNotFound: no session has that token (never existed, expired or deleted).
	ErrNotFound = errors.New("session not found")
	// ErrNoIndex: RevokeAll needs per-user index sets; enqueue a
	// session:revoke job instead, which scans when there is no index.
	ErrNoIndex = errors.New("session: no index configured (Config.Index); enqueue a session:revoke job to revoke by scanning")
)

// Defaults of Config, matching the FastAPI guide.
const (
	DefaultKey            = "session:{token}"
	DefaultIndex          = "user:{user_id}:sessions"
	DefaultUserIDField    = "user_id"
	DefaultCreatedAtField = "created_at"
	DefaultLastSeenField  = "last_seen"
	DefaultTTL            = 24 * time.Hour
)

// Config describes where and how sessions are stored. Zero fields take the
// defaults above.
type Config struct {
	// Key is the template of a session hash; its one placeholder is the token.
	Key string
	// Index is the template of a user's token set; its one placeholder is
	// the user id. NoIndex turns the index off.
	Index   string
	NoIndex bool
	// Field names inside the session hash.
	UserIDField    string
	CreatedAtField string
	LastSeenField  string
	// TTL is the life of a session after Create and after every Touch.
	TTL time.Duration
	// Now is the clock timestamps are written with (default time.Now).
	Now func() time.Time
}

func (c Config) withDefaults() Config {
	def := func(s *string, v string) {
		if *s == "" {
			*s = v
		}
	}
	def(&c.Key, DefaultKey)
	if !c.NoIndex {
		def(&c.Index, DefaultIndex)
	} else {
		c.Index = ""
	}
	def(&c.UserIDField, DefaultUserIDField)
	def(&c.CreatedAtField, DefaultCreatedAtField)
	def(&c.LastSeenField, DefaultLastSeenField)
	if c.TTL == 0 {
		c.TTL = DefaultTTL
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// ConfigFrom returns the Config of the sessions section of cachekeeper's
// configuration (config.Config.Sessions), so that an application and its
// workers share one file: the same key templates, fields and TTL.
func ConfigFrom(c config.SessionsConfig) Config {
	return Config{Key: c.Key, Index: c.Index, NoIndex: c.Index == "", UserIDField: c.UserIDField,
		CreatedAtField: c.CreatedAtField, LastSeenField: c.LastSeenField, TTL: c.TTL}
}

// NewFromConfig is New with ConfigFrom(c).
func NewFromConfig(rdb redis.UniversalClient, c config.SessionsConfig) (*Store, error) {
	return New(rdb, ConfigFrom(c))
}

// Session is one stored session.
type Session struct {
	Token     string
	UserID    string
	CreatedAt time.Time
	// LastSeen is zero when the session was never touched.
	LastSeen time.Time
	// Data holds the hash's other fields.
	Data map[string]string
	// TTL is the remaining life; 0 when the key has no TTL.
	TTL time.Duration
}

// Store creates, reads and deletes sessions. It is safe for concurrent use.
type Store struct {
	rdb    redis.UniversalClient
	cfg    Config
	layout keys.SessionLayout
}

// New returns a Store on rdb. It fails on a template with other than one
// placeholder, on empty or duplicate field names and on a TTL under a second.
func New(rdb redis.UniversalClient, cfg Config) (*Store, error) {
	if rdb == nil {
		return nil, errors.New("session: nil Redis client")
	}
	cfg = cfg.withDefaults()
	layout, err := keys.NewSessionLayout(cfg.Key, cfg.Index)
	if err != nil {
		return nil, fmt.Errorf("session: %w", err)
	}
	f := map[string]bool{}
	for _, name := range []string{cfg.UserIDField, cfg.CreatedAtField, cfg.LastSeenField} {
		if f[name] {
			return nil, fmt.Errorf("session: field name %q is used twice; give user_id, created_at and last_seen distinct names", name)
		}
		f[name] = true
	}
	if cfg.TTL < time.Second {
		return nil, fmt.Errorf("session: TTL %s must be at least 1s", cfg.TTL)
	}
	return &Store{rdb: rdb, cfg: cfg, layout: layout}, nil
}

// Key returns the Redis key of the session with token.
func (s *Store) Key(token string) string { return s.layout.Session(token) }

// IndexKey returns the key of userID's index set, "" without an index.
func (s *Store) IndexKey(userID string) string { return s.layout.Index(userID) }

// NewToken returns 32 random bytes from crypto/rand, base64url-encoded
// without padding: the same shape as Python's secrets.token_urlsafe(32).
func NewToken() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("session: random token: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// Create stores a new session of userID with extra fields data and returns
// its token. The hash and its TTL are written in one MULTI; then the token
// is added to the user's index. If the index cannot be updated, the session
// is deleted again and the error returned.
func (s *Store) Create(ctx context.Context, userID string, data map[string]string) (string, error) {
	if userID == "" {
		return "", errors.New("session: Create: user id must not be empty")
	}
	for k := range data {
		if k == s.cfg.UserIDField || k == s.cfg.CreatedAtField || k == s.cfg.LastSeenField {
			return "", fmt.Errorf("session: Create: data field %q is reserved; rename it", k)
		}
	}
	token, err := NewToken()
	if err != nil {
		return "", err
	}
	key := s.layout.Session(token)
	now := FormatTime(s.cfg.Now())
	fields := make([]any, 0, 2*len(data)+6)
	fields = append(fields, s.cfg.UserIDField, userID, s.cfg.CreatedAtField, now, s.cfg.LastSeenField, now)
	for k, v := range data {
		fields = append(fields, k, v)
	}
	_, err = s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.HSet(ctx, key, fields...)
		p.PExpire(ctx, key, s.cfg.TTL)
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("session: create %s: %w", key, err)
	}
	if s.layout.HasIndex() {
		idx := s.layout.Index(userID)
		if err := s.rdb.SAdd(ctx, idx, token).Err(); err != nil {
			// Do not leave a session that RevokeAll cannot find.
			_ = s.rdb.Del(context.WithoutCancel(ctx), key).Err()
			return "", fmt.Errorf("session: add token to index %s: %w", idx, err)
		}
	}
	return token, nil
}

// Get returns the session with token, or ErrNotFound.
func (s *Store) Get(ctx context.Context, token string) (Session, error) {
	key := s.layout.Session(token)
	var all *redis.MapStringStringCmd
	var ttl *redis.DurationCmd
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		all = p.HGetAll(ctx, key)
		ttl = p.PTTL(ctx, key)
		return nil
	})
	if err != nil {
		return Session{}, fmt.Errorf("session: get %s: %w", key, err)
	}
	m := all.Val()
	if len(m) == 0 {
		return Session{}, ErrNotFound
	}
	out := Session{Token: token, UserID: m[s.cfg.UserIDField], Data: map[string]string{}}
	if d := ttl.Val(); d > 0 {
		out.TTL = d
	}
	for k, v := range m {
		switch k {
		case s.cfg.UserIDField:
		case s.cfg.CreatedAtField:
			if out.CreatedAt, err = ParseTime(v); err != nil {
				return Session{}, fmt.Errorf("session: %s field %s: %w", key, k, err)
			}
		case s.cfg.LastSeenField:
			if out.LastSeen, err = ParseTime(v); err != nil {
				return Session{}, fmt.Errorf("session: %s field %s: %w", key, k, err)
			}
		default:
			out.Data[k] = v
		}
	}
	return out, nil
}

// Touch records activity: last_seen becomes now and the TTL starts again
// (sliding expiry), in one script. A session that is gone gives ErrNotFound
// and is not recreated.
func (s *Store) Touch(ctx context.Context, token string) error {
	key := s.layout.Session(token)
	n, err := redisx.SessionTouch.Run(ctx, s.rdb, []string{key}, s.cfg.LastSeenField, FormatTime(s.cfg.Now()), s.cfg.TTL.Milliseconds()).Int()
	if err != nil {
		return fmt.Errorf("session: touch %s: %w", key, err)
	}
	if n == 0 {
		return ErrNotFound
	}
	return nil
}

// Delete removes the session with token and its index entry (logout). A
// session that is already gone is not an error.
func (s *Store) Delete(ctx context.Context, token string) error {
	key := s.layout.Session(token)
	userID, err := s.rdb.HGet(ctx, key, s.cfg.UserIDField).Result()
	if err != nil && !errors.Is(err, redis.Nil) {
		return fmt.Errorf("session: delete %s: %w", key, err)
	}
	if err := s.rdb.Del(ctx, key).Err(); err != nil {
		return fmt.Errorf("session: delete %s: %w", key, err)
	}
	if userID != "" && s.layout.HasIndex() {
		idx := s.layout.Index(userID)
		if err := s.rdb.SRem(ctx, idx, token).Err(); err != nil {
			return fmt.Errorf("session: remove token from index %s: %w", idx, err)
		}
	}
	return nil
}

// RevokeAll deletes every session of userID listed in its index and removes
// those tokens from the index (a session created meanwhile keeps its
// entry). It returns how many sessions it deleted. Without an index it
// returns ErrNoIndex.
func (s *Store) RevokeAll(ctx context.Context, userID string) (int, error) {
	if !s.layout.HasIndex() {
		return 0, ErrNoIndex
	}
	if userID == "" {
		return 0, errors.New("session: RevokeAll: user id must not be empty")
	}
	idx := s.layout.Index(userID)
	tokens, err := s.rdb.SMembers(ctx, idx).Result()
	if err != nil {
		return 0, fmt.Errorf("session: read index %s: %w", idx, err)
	}
	if len(tokens) == 0 {
		return 0, nil
	}
	calls := make([]redisx.Call, len(tokens))
	for i, tok := range tokens {
		calls[i] = redisx.Call{Script: redisx.SessionDeleteIfOwner, Keys: []string{s.layout.Session(tok)}, Args: []any{s.cfg.UserIDField, userID}}
	}
	cmds, err := redisx.EvalAll(ctx, s.rdb, calls)
	if err != nil {
		return 0, fmt.Errorf("session: revoke sessions of %s: %w", userID, err)
	}
	deleted := 0
	for _, c := range cmds {
		if n, _ := c.Int(); n > 0 {
			deleted++
		}
	}
	members := make([]any, len(tokens))
	for i, tok := range tokens {
		members[i] = tok
	}
	if err := s.rdb.SRem(ctx, idx, members...).Err(); err != nil {
		return deleted, fmt.Errorf("session: remove tokens from index %s: %w", idx, err)
	}
	return deleted, nil
}
