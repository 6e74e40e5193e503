package session_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/cachekeeper/cachekeeper/internal/testenv"
	"github.com/cachekeeper/cachekeeper/session"
)

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func setup(t *testing.T, cfg session.Config) (*session.Store, *redis.Client, *clock) {
	t.Helper()
	r := testenv.NewRedis(t)
	c := &clock{t: time.Date(2024, 1, 15, 10, 30, 0, 123456000, time.UTC)}
	if cfg.Now == nil {
		cfg.Now = c.now
	}
	s, err := session.New(r.Client, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s, r.Client, c
}

func TestCreateWritesGuideLayoutWithTTLAndIndex(t *testing.T) {
	t.Parallel()
	s, rdb, _ := setup(t, session.Config{})
	ctx := context.Background()
	tok, err := s.Create(ctx, "42", map[string]string{"ip": "10.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	if len(tok) != 43 || strings.ContainsAny(tok, "+/=") {
		t.Fatalf("token %q is not 32 bytes of base64url", tok)
	}
	h := rdb.HGetAll(ctx, "session:"+tok).Val()
	if h["user_id"] != "42" || h["created_at"] != "2024-01-15T10:30:00.123456" || h["ip"] != "10.0.0.1" {
		t.Fatalf("hash = %v", h)
	}
	if ttl := rdb.TTL(ctx, "session:"+tok).Val(); ttl <= 23*time.Hour || ttl > 24*time.Hour {
		t.Fatalf("TTL = %s, want about 24h", ttl)
	}
	if !rdb.SIsMember(ctx, "user:42:sessions", tok).Val() {
		t.Fatal("token not in user:42:sessions")
	}
	other, _ := s.Create(ctx, "42", nil)
	if other == tok {
		t.Fatal("two sessions got the same token")
	}
}

func TestGetTouchDelete(t *testing.T) {
	t.Parallel()
	s, rdb, clk := setup(t, session.Config{TTL: time.Hour})
	ctx := context.Background()
	tok, err := s.Create(ctx, "7", map[string]string{"role": "admin"})
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.Get(ctx, tok)
	if err != nil {
		t.Fatal(err)
	}
	if got.UserID != "7" || !got.CreatedAt.Equal(clk.t) || got.Data["role"] != "admin" || got.TTL <= 0 || got.TTL > time.Hour {
		t.Fatalf("Get = %+v", got)
	}

	// Touch renews the TTL and moves last_seen.
	rdb.Expire(ctx, "session:"+tok, time.Minute)
	clk.t = clk.t.Add(10 * time.Minute)
	if err := s.Touch(ctx, tok); err != nil {
		t.Fatal(err)
	}
	got, _ = s.Get(ctx, tok)
	if !got.LastSeen.Equal(clk.t) || got.TTL <= 59*time.Minute {
		t.Fatalf("after Touch: last_seen %s (want %s), TTL %s (want ~1h)", got.LastSeen, clk.t, got.TTL)
	}

	if err := s.Delete(ctx, tok); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, tok); !errors.Is(err, session.ErrNotFound) {
		t.Fatalf("Get after Delete = %v, want ErrNotFound", err)
	}
	if rdb.Exists(ctx, "user:7:sessions").Val() != 0 {
		t.Fatal("index still holds the deleted token")
	}
	if err := s.Delete(ctx, tok); err != nil {
		t.Fatalf("second Delete = %v, want nil", err)
	}
	// Touch must not resurrect a deleted session as a partial hash with no TTL.
	if err := s.Touch(ctx, tok); !errors.Is(err, session.ErrNotFound) {
		t.Fatalf("Touch of a deleted session = %v, want ErrNotFound", err)
	}
	if rdb.Exists(ctx, "session:"+tok).Val() != 0 {
		t.Fatal("Touch recreated a deleted session")
	}
}

func TestRevokeAllOnlyTouchesTheUsersSessions(t *testing.T) {
	t.Parallel()
	s, rdb, _ := setup(t, session.Config{})
	ctx := context.Background()
	var alice []string
	for i := 0; i < 3; i++ {
		tok, err := s.Create(ctx, "alice", nil)
		if err != nil {
			t.Fatal(err)
		}
		alice = append(alice, tok)
	}
	bob, _ := s.Create(ctx, "bob", nil)
	// Messy index: a dead token and (corruption) a token of bob's session.
	rdb.SAdd(ctx, "user:alice:sessions", "dead-token", bob)

	n, err := s.RevokeAll(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	if n != 3 {
		t.Fatalf("RevokeAll deleted %d sessions, want 3", n)
	}
	for _, tok := range alice {
		if rdb.Exists(ctx, "session:"+tok).Val() != 0 {
			t.Fatalf("alice's session %s survived", tok)
		}
	}
	if rdb.Exists(ctx, "session:"+bob).Val() != 1 {
		t.Fatal("bob's session, listed in alice's index, was deleted")
	}
	if rdb.Exists(ctx, "user:alice:sessions").Val() != 0 {
		t.Fatal("alice's index survived")
	}
	if !rdb.SIsMember(ctx, "user:bob:sessions", bob).Val() {
		t.Fatal("bob's index lost his token")
	}
	if n, err := s.RevokeAll(ctx, "alice"); n != 0 || err != nil {
		t.Fatalf("second RevokeAll = %d, %v; want 0, nil", n, err)
	}
}

func TestCustomLayoutAndNoIndex(t *testing.T) {
	t.Parallel()
	s, rdb, _ := setup(t, session.Config{Key: "app:sess:{t}", NoIndex: true, UserIDField: "uid", CreatedAtField: "born", LastSeenField: "seen"})
	ctx := context.Background()
	tok, err := s.Create(ctx, "9", nil)
	if err != nil {
		t.Fatal(err)
	}
	if h := rdb.HGetAll(ctx, "app:sess:"+tok).Val(); h["uid"] != "9" || h["born"] == "" {
		t.Fatalf("hash = %v", h)
	}
	if keys := rdb.Keys(ctx, "user:*").Val(); len(keys) != 0 {
		t.Fatalf("index written without one configured: %v", keys)
	}
	if _, err := s.RevokeAll(ctx, "9"); !errors.Is(err, session.ErrNoIndex) {
		t.Fatalf("RevokeAll without index = %v, want ErrNoIndex", err)
	}
}

func TestNewAndCreateRejectBadInput(t *testing.T) {
	t.Parallel()
	r := testenv.NewRedis(t)
	for _, cfg := range []session.Config{
		{Key: "s:{a}:{b}"},
		{Key: "nokey"},
		{Index: "u:{x}:{y}"},
		{UserIDField: "x", CreatedAtField: "x"},
		{TTL: time.Millisecond},
	} {
		if _, err := session.New(r.Client, cfg); err == nil {
			t.Errorf("New(%+v) accepted", cfg)
		}
	}
	s, _ := session.New(r.Client, session.Config{})
	if _, err := s.Create(context.Background(), "", nil); err == nil {
		t.Error("empty user id accepted")
	}
	if _, err := s.Create(context.Background(), "1", map[string]string{"created_at": "x"}); err == nil || !strings.Contains(err.Error(), "reserved") {
		t.Errorf("reserved field accepted: %v", err)
	}
}

func TestParseTime(t *testing.T) {
	t.Parallel()
	want := time.Date(2024, 1, 15, 10, 30, 0, 123456000, time.UTC)
	ok := map[string]time.Time{
		"2024-01-15T10:30:00.123456":       want,
		"2024-01-15 10:30:00.123456":       want,
		"2024-01-15T10:30:00":              want.Truncate(time.Second),
		"2024-01-15T10:30:00.123456Z":      want,
		"2024-01-15T12:30:00.123456+02:00": want,
		"1705314600":                       want.Truncate(time.Second),
		"1705314600.123456":                want,
	}
	for in, w := range ok {
		got, err := session.ParseTime(in)
		if err != nil || !got.Equal(w) {
			t.Errorf("ParseTime(%q) = %s, %v; want %s", in, got, err, w)
		}
	}
	for _, in := range []string{"", "yesterday", "1705314600123", "-5", "2024-13-01T00:00:00", "1.2.3", ".5"} {
		if _, err := session.ParseTime(in); err == nil {
			t.Errorf("ParseTime(%q) accepted", in)
		}
	}
	if s := session.FormatTime(want); s != "2024-01-15T10:30:00.123456" {
		t.Errorf("FormatTime = %q", s)
	}
}
