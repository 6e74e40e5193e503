package httpapi_test

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cachekeeper/cachekeeper/internal/httpapi"
	"github.com/prometheus/client_golang/prometheus"
)

func TestReadyzPerDependency(t *testing.T) {
	var redisDown, dbDown atomic.Bool
	check := func(down *atomic.Bool, msg string) httpapi.Check {
		return func(context.Context) error {
			if down.Load() {
				return errors.New(msg)
			}
			return nil
		}
	}
	srv, err := httpapi.New("127.0.0.1:0", prometheus.NewRegistry(), httpapi.Probes(
		httpapi.Probe{Name: "redis", Required: true, Check: check(&redisDown, "redis refused")},
		httpapi.Probe{Name: "database", Check: check(&dbDown, "db refused")},
	), slog.New(slog.DiscardHandler), nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	defer func() {
		cancel()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Error("server did not stop")
		}
		http.DefaultClient.CloseIdleConnections()
	}()
	url := "http://" + srv.Addr() + "/readyz"
	for _, tc := range []struct {
		redis, db bool
		code      int
		status    string
	}{
		{false, false, 200, "ready"},
		{false, true, 200, "degraded"}, // an optional dependency down: still ready for Kubernetes
		{true, false, 503, "not_ready"},
	} {
		redisDown.Store(tc.redis)
		dbDown.Store(tc.db)
		code, body := get(t, url)
		var rep httpapi.ReadyReport
		if err := json.Unmarshal([]byte(body), &rep); err != nil {
			t.Fatalf("body %q: %v", body, err)
		}
		if code != tc.code || rep.Status != tc.status || len(rep.Dependencies) != 2 {
			t.Errorf("redis down %v, db down %v: %d %+v; want %d %s", tc.redis, tc.db, code, rep, tc.code, tc.status)
		}
		if tc.db && rep.Dependencies[1].Error != "db refused" {
			t.Errorf("database entry %+v does not carry its error", rep.Dependencies[1])
		}
	}
}
