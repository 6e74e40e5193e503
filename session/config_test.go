package session_test

import (
	"context"
	"testing"
	"time"

	"github.com/cachekeeper/cachekeeper/config"
	"github.com/cachekeeper/cachekeeper/internal/testenv"
	"github.com/cachekeeper/cachekeeper/session"
)

// A store built from the configuration writes where the cleanup job looks.
func TestNewFromConfigSharesTheLayout(t *testing.T) {
	t.Parallel()
	r := testenv.NewRedis(t)
	ctx := context.Background()
	cfg := config.DefaultSessions()
	cfg.Key, cfg.Index, cfg.UserIDField, cfg.TTL = "app:sess:{token}", "", "uid", time.Hour
	st, err := session.NewFromConfig(r.Client, cfg)
	if err != nil {
		t.Fatal(err)
	}
	token, err := st.Create(ctx, "alice", nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := r.Client.HGet(ctx, "app:sess:"+token, "uid").Val(); got != "alice" {
		t.Fatalf("uid field of app:sess:%s = %q, want alice", token, got)
	}
	if _, err := st.RevokeAll(ctx, "alice"); err != session.ErrNoIndex {
		t.Fatalf("RevokeAll without index: %v, want ErrNoIndex", err)
	}
}
