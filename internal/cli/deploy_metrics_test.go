package cli_test

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/cachekeeper/cachekeeper/internal/testenv"
	"gopkg.in/yaml.v3"
)

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	return addr
}

// scrape waits (bounded) for addr's /metrics and returns its metric names.
func scrape(t *testing.T, addr string) map[string]bool {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get("http://" + addr + "/metrics")
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			names := map[string]bool{}
			for _, line := range strings.Split(string(body), "\n") {
				if line == "" || strings.HasPrefix(line, "#") {
					continue
				}
				names[strings.FieldsFunc(line, func(r rune) bool { return r == '{' || r == ' ' })[0]] = true
			}
			if names["cachekeeper_queue_size"] || names["cachekeeper_scheduler_ticks_total"] {
				return names
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no metrics at %s within 20s: %v %v", addr, err, dbgNames(addr))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Every metric the Grafana dashboard and the alert rules use is exported by
// a running worker or scheduler, from its start (series initialised at 0).
func TestDashboardAndAlertsUseRealMetrics(t *testing.T) {
	t.Parallel()
	r := testenv.NewRedis(t)
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "ck.yaml")
	dbPath := filepath.Join(dir, "app.db")
	db, err := sql.Open("sqlite", dbPath)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec("CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT, full_name TEXT)"); err != nil {
		t.Fatal(err)
	}
	_ = db.Close()
	body := fmt.Sprintf("redis:\n  url: %s\ndatabase:\n  url: sqlite://%s\n"+
		"caches:\n  user:\n    key: \"user:{id}\"\n    ttl: 1h\n    by_ids: \"SELECT id, email, full_name AS name FROM users WHERE id IN (?)\"\n"+
		"schedule:\n  - name: prune\n    schedule: \"@every 1h\"\n    kind: ratelimit:prune\n", r.URL, dbPath)
	if err := os.WriteFile(cfgPath, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	wAddr, sAddr := freeAddr(t), freeAddr(t)
	done := make(chan result, 2)
	go func() {
		done <- run(t, ctx, nil, "worker", "-c", cfgPath, "--metrics-addr", wAddr, "--servers", "1", "--log-level", "error")
	}()
	go func() {
		done <- run(t, ctx, nil, "scheduler", "-c", cfgPath, "--metrics-addr", sAddr, "--log-level", "error")
	}()
	have := scrape(t, wAddr)
	for n := range scrape(t, sAddr) {
		have[n] = true
	}

	var exprs []string
	var alerts struct {
		Groups []struct {
			Name  string `yaml:"name"`
			Rules []struct {
				Alert       string            `yaml:"alert"`
				Expr        string            `yaml:"expr"`
				For         string            `yaml:"for"`
				Labels      map[string]string `yaml:"labels"`
				Annotations map[string]string `yaml:"annotations"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	b, err := os.ReadFile("../../deploy/prometheus/alerts.yaml")
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&alerts); err != nil {
		t.Fatalf("alerts.yaml: %v", err)
	}
	wantAlerts := []string{"Backlog", "Latency", "DeadLetters", "FencedWritesSkipped", "SchedulerTicksMissing"}
	for _, g := range alerts.Groups {
		for _, rule := range g.Rules {
			if rule.Alert == "" || rule.Expr == "" || rule.Annotations["summary"] == "" {
				t.Errorf("alert rule %+v lacks a name, expr or summary", rule)
			}
			if rule.For != "" {
				if _, err := time.ParseDuration(rule.For); err != nil {
					t.Errorf("alert %s: for %q: %v", rule.Alert, rule.For, err)
				}
			}
			exprs = append(exprs, rule.Expr)
			for i, w := range wantAlerts {
				if strings.HasSuffix(rule.Alert, w) {
					wantAlerts[i] = ""
				}
			}
		}
	}
	for _, w := range wantAlerts {
		if w != "" {
			t.Errorf("no alert rule for %s", w)
		}
	}
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	b, err = os.ReadFile("../../deploy/grafana/cachekeeper-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatalf("dashboard: %v", err)
	}
	for _, p := range dash.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			exprs = append(exprs, tg.Expr)
		}
	}
	metric := regexp.MustCompile(`cachekeeper_[a-z0-9_]+`)
	used := 0
	for _, e := range exprs {
		for _, m := range metric.FindAllString(e, -1) {
			used++
			if !have[m] {
				t.Errorf("%q uses %s, which no running worker or scheduler exports", e, m)
			}
		}
	}
	for _, m := range []string{"cachekeeper_queue_size", "cachekeeper_queue_latency_seconds", "cachekeeper_queue_paused",
		"cachekeeper_inbox_dead_letters", "cachekeeper_build_info", "cachekeeper_fenced_writes_skipped_total", "cachekeeper_inbox_entries_total"} {
		if !have[m] {
			t.Errorf("the worker does not export %s from its start", m)
		}
	}
	t.Logf("%d metric uses in %d expressions checked against %d exported names", used, len(exprs), len(have))
	cancel()
	for range 2 {
		select {
		case res := <-done:
			if res.code != 0 {
				t.Errorf("process exit %d: %s", res.code, res.stderr)
			}
		case <-time.After(20 * time.Second):
			t.Fatal("worker or scheduler did not stop")
		}
	}
}

func dbgNames(addr string) string {
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.Contains(l, "cachekeeper") && !strings.HasPrefix(l, "#") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
