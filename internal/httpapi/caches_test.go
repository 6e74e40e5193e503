package httpapi_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/cachekeeper/cachekeeper/changes"
	"github.com/cachekeeper/cachekeeper/internal/httpapi"
	"github.com/cachekeeper/cachekeeper/internal/keys"
	"github.com/cachekeeper/cachekeeper/internal/testenv"
	"github.com/cachekeeper/cachekeeper/scheduler"
	"github.com/cachekeeper/cachekeeper/tasks"
	"github.com/cachekeeper/cachekeeper/worker"
	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
)

const testInbox = "cachekeeper:inbox"

// seedCaches puts into a private Redis what the page reads: pending ids,
// a served marker, a checkpoint, a completed warm_all with its progress, a
// dead letter and a last tick; and counters into a registry.
func seedCaches(t *testing.T) (httpapi.CachesSource, *testenv.Redis) {
	t.Helper()
	r := testenv.NewRedis(t)
	ctx := context.Background()
	k, err := keys.New("cachekeeper:")
	if err != nil {
		t.Fatal(err)
	}
	rdb := r.Client
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(rdb.ZAdd(ctx, k.WarmPending("user"), z(1, "1"), z(2, "2"), z(3, "3")).Err())
	must(rdb.Set(ctx, k.WarmServed("user"), "1", time.Minute).Err())
	must(rdb.SAdd(ctx, k.WarmCaches(), "user", "usr").Err())
	must(rdb.ZAdd(ctx, k.WarmPending("usr"), z(1, "9")).Err())
	must(rdb.Set(ctx, k.WarmAllCheckpoint("user"), `{"task_id":"wa-1","last_id":"40","last_id_int":true,"rows_done":40,"started_at":"2026-01-01T00:00:00Z","updated_at":"2026-01-01T00:01:00Z"}`, time.Hour).Err())
	dead, _ := json.Marshal(map[string]any{"entry": `{"kind":"cache:warm","args":{}}`, "error": "cache:warm: field cache: must name a cache", "time": time.Now().UTC()})
	must(rdb.LPush(ctx, keys.DeadLetter(testInbox), string(dead)).Err())
	must(rdb.HSet(ctx, k.SchedulerLastTick(), "prune", time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC).Unix()).Err())

	// A warm_all that ran on a real asynq server, its progress in the result.
	srv := asynq.NewServerFromRedisClient(rdb, asynq.Config{Concurrency: 1, Queues: map[string]int{"low": 1}})
	mux := asynq.NewServeMux()
	release := make(chan struct{})
	mux.HandleFunc(tasks.KindWarmAll, func(ctx context.Context, task *asynq.Task) error {
		if task.ResultWriter().TaskID() == "wa-running" {
			// Still running: progress written, the table not done.
			b, _ := json.Marshal(worker.WarmAllProgress{Cache: "session", RowsDone: 7, Total: 70})
			if _, err := task.ResultWriter().Write(b); err != nil {
				return err
			}
			select {
			case <-release:
			case <-ctx.Done():
			}
			return nil
		}
		b, _ := json.Marshal(worker.WarmAllProgress{Cache: "user", RowsDone: 40, Total: 100, Written: 38, Skipped: 2, Done: true})
		_, err := task.ResultWriter().Write(b)
		return err
	})
	must(srv.Start(mux))
	t.Cleanup(srv.Shutdown)
	t.Cleanup(func() { close(release) }) // runs before Shutdown
	cl := asynq.NewClientFromRedisClient(rdb)
	_, err = cl.Enqueue(asynq.NewTask(tasks.KindWarmAll, []byte(`{"cache":"user"}`)), asynq.Queue("low"), asynq.TaskID("wa-1"), asynq.Retention(time.Hour))
	must(err)
	insp := asynq.NewInspectorFromRedisClient(rdb)
	deadline := time.Now().Add(15 * time.Second)
	for {
		ti, err := insp.GetTaskInfo("low", "wa-1")
		if err == nil && ti.State == asynq.TaskStateCompleted {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the warm_all task did not complete in 15s: %+v %v", ti, err)
		}
		time.Sleep(20 * time.Millisecond)
	}

	_, err = cl.Enqueue(asynq.NewTask(tasks.KindWarmAll, []byte(`{"cache":"session"}`)), asynq.Queue("low"), asynq.TaskID("wa-running"))
	must(err)
	for {
		ti, err := insp.GetTaskInfo("low", "wa-running")
		if err == nil && ti.State == asynq.TaskStateActive && len(ti.Result) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the running warm_all did not report progress in 15s: %+v %v", ti, err)
		}
		time.Sleep(20 * time.Millisecond)
	}

	reg := prometheus.NewRegistry()
	m, err := worker.NewMetrics(reg)
	must(err)
	m.Skipped.WithLabelValues("user").Add(2)
	m.Keys.WithLabelValues(tasks.KindWarm, "written").Add(5)
	m.Keys.WithLabelValues(tasks.KindInvalidate, "deleted").Add(7)

	entries, err := scheduler.ParseEntries([]scheduler.EntryConfig{{Name: "prune", Schedule: "@every 1m", Kind: "ratelimit:prune"}})
	must(err)
	return httpapi.CachesSource{Inspector: insp, Redis: rdb, Keys: k, Caches: []string{"user", "session"}, InboxKey: testInbox,
		Schedule: entries, Gatherer: reg, UIPath: "/ui/"}, r
}

func TestCachesJSON(t *testing.T) {
	t.Parallel()
	src, _ := seedCaches(t)
	src.ReadOnly = true
	ts := serve(t, src)
	code, body := get(t, ts.URL+"/caches.json")
	if code != http.StatusOK {
		t.Fatalf("GET /caches.json = %d %s", code, body)
	}
	var st httpapi.CachesState
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		t.Fatalf("%v in %s", err, body)
	}
	by := map[string]httpapi.CacheState{}
	for _, c := range st.Caches {
		by[c.Name] = c
	}
	u := by["user"]
	if u.PendingIDs != 3 || !u.Served || !u.Configured || u.FencedWritesSkipped != 2 {
		t.Errorf("user = %+v, want 3 pending, served, configured, 2 skipped", u)
	}
	if u.Checkpoint == nil || u.Checkpoint.LastID != "40" || u.Checkpoint.RowsDone != 40 || u.Checkpoint.TaskID != "wa-1" {
		t.Errorf("user checkpoint = %+v", u.Checkpoint)
	}
	if w := u.WarmAll; w == nil || w.TaskID != "wa-1" || w.State != "completed" || w.Progress == nil || w.Progress.RowsDone != 40 || w.Progress.Total != 100 {
		t.Errorf("user warm_all = %+v", w)
	}
	if s := by["session"]; s.PendingIDs != 0 || s.Served || !s.Configured {
		t.Errorf("session = %+v, want 0 pending, unserved", s)
	}
	if w := by["session"].WarmAll; w == nil || w.TaskID != "wa-running" || w.State != "active" || w.Progress == nil || w.Progress.RowsDone != 7 || w.Progress.Total != 70 {
		t.Errorf("session warm_all = %+v, want the running task with its progress", w)
	}
	if s := by["usr"]; s.PendingIDs != 1 || s.Configured {
		t.Errorf("usr (only used by WarmCache) = %+v", s)
	}
	keysBy := map[string]float64{}
	for _, kc := range st.Keys {
		keysBy[kc.Kind+" "+kc.Action] = kc.Count
	}
	if keysBy["cache:warm written"] != 5 || keysBy["cache:invalidate deleted"] != 7 {
		t.Errorf("keys = %+v", st.Keys)
	}
	if st.Inbox == nil || st.Inbox.DeadLetters != 1 || len(st.Inbox.Dead) != 1 || !strings.Contains(st.Inbox.Dead[0].Reason, "must name a cache") {
		t.Errorf("inbox = %+v", st.Inbox)
	}
	if len(st.Schedule) != 1 || st.Schedule[0].Name != "prune" || len(st.Schedule[0].Next) != 3 || st.Schedule[0].LastTick.Unix() != time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC).Unix() {
		t.Errorf("schedule = %+v", st.Schedule)
	}
	if len(st.Processes) != 1 || len(st.Processes[0].Servers) != 1 || st.Processes[0].PID == 0 || st.Processes[0].Queues["low"] != 1 {
		t.Errorf("processes = %+v, want this test process with its one asynq server", st.Processes)
	}
	if !st.ReadOnly || st.UIPath != "/ui/" {
		t.Errorf("read_only %v ui_path %q", st.ReadOnly, st.UIPath)
	}
}

func TestCachesHTML(t *testing.T) {
	t.Parallel()
	src, r := seedCaches(t)
	ctx := context.Background()

	t.Run("read only", func(t *testing.T) {
		ro := src
		ro.ReadOnly = true
		ts := serve(t, ro)
		resp, err := http.Get(ts.URL + "/caches")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		body := string(b)
		if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
			t.Fatalf("GET /caches = %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
		}
		for _, want := range []string{`<meta http-equiv="refresh" content="10; url=/caches">`, `href="/ui/"`, "<b>user</b>", `<td class="n pending">3</td>`, "unserved",
			"misspelt in WarmCache", "must name a cache", "40 / 100 rows", "7 / 70 rows", "active <code>wa-running</code>", "after id <code>40</code>", "<b>prune</b>", "2026-01-01 12:00:00Z", "read-only", `style="width:40.0%"`} {
			if !strings.Contains(body, want) {
				t.Errorf("the page lacks %q", want)
			}
		}
		for _, bad := range []string{"<form", "<script", "http://", "https://", "ZgotmplZ", "Change stream"} {
			if strings.Contains(body, bad) {
				t.Errorf("the read-only page holds %q", bad)
			}
		}
		code, _ := post(t, ts.URL+"/caches/dead/purge", url.Values{"record": {"x"}}, "")
		if code != http.StatusForbidden {
			t.Errorf("POST purge on a read-only page = %d, want 403", code)
		}
	})

	t.Run("actions", func(t *testing.T) {
		ts := serve(t, src)
		code, body := get(t, ts.URL+"/caches")
		if code != http.StatusOK || strings.Count(body, "<form") != 2 {
			t.Fatalf("GET /caches = %d with %d forms, want replay and purge", code, strings.Count(body, "<form"))
		}
		recs, err := r.Client.LRange(ctx, keys.DeadLetter(testInbox), 0, -1).Result()
		if err != nil || len(recs) != 1 {
			t.Fatal(recs, err)
		}
		if code, _ := post(t, ts.URL+"/caches/dead/replay", url.Values{"record": {recs[0]}}, "https://evil.example"); code != http.StatusForbidden {
			t.Errorf("a cross-origin POST = %d, want 403", code)
		}
		if code, _ := post(t, ts.URL+"/caches/dead/replay", url.Values{"record": {recs[0]}}, ""); code != http.StatusSeeOther {
			t.Fatalf("POST replay = %d, want 303", code)
		}
		if n := r.Client.LLen(ctx, keys.DeadLetter(testInbox)).Val(); n != 0 {
			t.Errorf("%d dead letters after the replay", n)
		}
		if got := r.Client.LRange(ctx, testInbox, 0, -1).Val(); len(got) != 1 || got[0] != `{"kind":"cache:warm","args":{}}` {
			t.Errorf("inbox after the replay = %q", got)
		}
		if code, _ := post(t, ts.URL+"/caches/dead/replay", url.Values{"record": {recs[0]}}, ""); code != http.StatusConflict {
			t.Errorf("replaying it again = %d, want 409", code)
		}
		if err := r.Client.LPush(ctx, keys.DeadLetter(testInbox), recs[0]).Err(); err != nil {
			t.Fatal(err)
		}
		if code, _ := post(t, ts.URL+"/caches/dead/purge", url.Values{"record": {recs[0]}}, ""); code != http.StatusSeeOther {
			t.Fatalf("POST purge = %d, want 303", code)
		}
		if n := r.Client.LLen(ctx, keys.DeadLetter(testInbox)).Val(); n != 0 {
			t.Errorf("%d dead letters after the purge", n)
		}
		if code, _ := get(t, ts.URL+"/caches/dead/purge"); code != http.StatusMethodNotAllowed {
			t.Errorf("GET purge = %d, want 405", code)
		}
	})
}

// With a changes: configuration the page shows each stream as `cachekeeper
// changes status` prints it (holder, position, server position, lag, rate,
// slot and retained WAL, last report), and a stream whose status could not
// be read with its error; /caches.json carries the same.
func TestCachesChangeStreams(t *testing.T) {
	t.Parallel()
	src, _ := seedCaches(t)
	src.ReadOnly = true
	reported := time.Now().Add(-2 * time.Second)
	src.ChangeStreams = func(ctx context.Context) []httpapi.ChangeStream {
		if ctx.Err() != nil {
			t.Error("ChangeStreams called with a finished context")
		}
		return []httpapi.ChangeStream{
			{Status: changes.Status{Stream: "cachekeeper", Database: "postgres", Holder: "app-1:4242:abcdef", Position: "0/16B3748",
				ServerPosition: "0/16B3790", LagBytes: 72, LagSeconds: 0.25, ChangesPerSecond: 1234.5, RetainedBytes: 3 << 20,
				SlotActive: true, Exists: true, ReportedAt: reported}},
			{Status: changes.Status{Stream: "orders", Database: "postgres", ServerPosition: "0/16B3790"},
				Error: "read the stream's status: changes: connect to PostgreSQL: connection refused"},
		}
	}
	ts := serve(t, src)

	code, body := get(t, ts.URL+"/caches.json")
	if code != http.StatusOK {
		t.Fatalf("GET /caches.json = %d %s", code, body)
	}
	var st struct {
		Changes []struct {
			Stream, Database, Holder, Position, Error string
			ServerPosition                            string  `json:"server_position"`
			LagBytes                                  int64   `json:"lag_bytes"`
			LagSeconds                                float64 `json:"lag_seconds"`
			Rate                                      float64 `json:"changes_per_second"`
			Retained                                  int64   `json:"retained_wal_bytes"`
			SlotActive                                bool    `json:"slot_active"`
		} `json:"changes"`
	}
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		t.Fatalf("%v in %s", err, body)
	}
	if len(st.Changes) != 2 {
		t.Fatalf("changes = %+v, want 2 streams", st.Changes)
	}
	if c := st.Changes[0]; c.Stream != "cachekeeper" || c.Holder != "app-1:4242:abcdef" || c.Position != "0/16B3748" || c.ServerPosition != "0/16B3790" ||
		c.LagBytes != 72 || c.LagSeconds != 0.25 || c.Rate != 1234.5 || c.Retained != 3<<20 || !c.SlotActive || c.Error != "" {
		t.Errorf("stream cachekeeper in JSON = %+v", c)
	}
	if c := st.Changes[1]; c.Stream != "orders" || c.Holder != "" || !strings.Contains(c.Error, "connection refused") {
		t.Errorf("stream orders in JSON = %+v", c)
	}

	code, body = get(t, ts.URL+"/caches")
	if code != http.StatusOK {
		t.Fatalf("GET /caches = %d", code)
	}
	for _, want := range []string{"<h2>Change stream", `<tr data-stream="cachekeeper">`, "<code>app-1:4242:abcdef</code>", `<td class="position"><code>0/16B3748</code></td>`,
		"<code>0/16B3790</code>", `<td class="n lag">72 B, 0.250s</td>`, "1234.5 changes/s", `<span class="ok">active</span> · 3.0 MiB retained`,
		reported.UTC().Format("2006-01-02 15:04:05Z"), "2s ago",
		`<tr data-stream="orders">`, "none: no replica runs cachekeeper changes", "none yet", "connection refused", "pg_drop_replication_slot"} {
		if !strings.Contains(body, want) {
			t.Errorf("the page lacks %q", want)
		}
	}
	if strings.Contains(body, "ZgotmplZ") {
		t.Error("the page holds a value html/template refused")
	}
}

func z(score float64, member string) redis.Z { return redis.Z{Score: score, Member: member} }

func serve(t *testing.T, src httpapi.CachesSource) *httptest.Server {
	t.Helper()
	mux := http.NewServeMux()
	for p, h := range httpapi.CachesHandlers(src) {
		mux.Handle(p, h)
	}
	ts := httptest.NewServer(mux)
	t.Cleanup(ts.Close)
	return ts
}

func post(t *testing.T, u string, form url.Values, origin string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, u, strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if origin != "" {
		req.Header.Set("Origin", origin)
		req.Header.Set("Sec-Fetch-Site", "cross-site")
	}
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}
