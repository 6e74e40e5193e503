package cli_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cachekeeper/cachekeeper/changes"
	"github.com/cachekeeper/cachekeeper/config"
	"github.com/cachekeeper/cachekeeper/internal/keys"
	"github.com/cachekeeper/cachekeeper/internal/testenv"
	"github.com/chromedp/chromedp"
	"github.com/jackc/pglogrepl"
	"github.com/redis/go-redis/v9"
	_ "modernc.org/sqlite" // the worker's SQLite database, created here
)

// chromium finds Debian's chromium; with CI=true a missing browser fails
// the test (.ci/run installs it), else it skips.
func chromium(t *testing.T) string {
	t.Helper()
	for _, p := range []string{"/usr/bin/chromium", "chromium", "chromium-browser"} {
		if path, err := exec.LookPath(p); err == nil {
			return path
		}
	}
	if testenv.CI() {
		t.Fatal("CI=true and chromium is not installed: apt-get update && apt-get install -y chromium")
	}
	t.Skip("chromium is not installed (apt-get install -y chromium)")
	return ""
}

// artifactDir is where browser tests leave screenshots: $CACHEKEEPER_ARTIFACTS
// or a temporary directory.
func artifactDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("CACHEKEEPER_ARTIFACTS")
	if dir == "" {
		return t.TempDir()
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// The cachekeeper page, in a real headless Chromium, against a worker this
// test starts: it shows the caches with their pending ids, the inbox's dead
// letter with its reason (rejected by the worker's own inbox bridge), the
// schedule and the worker process; purging the dead letter through the
// page's form works; and a screenshot is saved.
func TestCachesPageInBrowser(t *testing.T) {
	exe := chromium(t)
	r := testenv.NewRedis(t)
	ctx := context.Background()
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "cachekeeper.yaml")
	cfgText := "database:\n  url: sqlite://" + filepath.Join(dir, "app.db") + "\n" +
		"worker:\n  ui: true\n" +
		"caches:\n  user:\n    key: \"user:{id}\"\n    ttl: 1h\n    by_ids: SELECT id, email FROM users WHERE id IN (?)\n" +
		"schedule:\n  - name: prune-rate-limits\n    schedule: \"@every 1m\"\n    kind: ratelimit:prune\n"
	if err := os.WriteFile(cfgPath, []byte(cfgText), 0o600); err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlite", filepath.Join(dir, "app.db"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec("CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT); INSERT INTO users VALUES (1, 'ada@example.com')"); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	k, err := keys.New("cachekeeper:")
	if err != nil {
		t.Fatal(err)
	}
	// Ids WarmCache left under a name no worker configures: they stay pending.
	if err := r.Client.SAdd(ctx, k.WarmCaches(), "usr").Err(); err != nil {
		t.Fatal(err)
	}
	if err := r.Client.ZAdd(ctx, k.WarmPending("usr"), redis.Z{Score: 1, Member: "7"}, redis.Z{Score: 2, Member: "8"}).Err(); err != nil {
		t.Fatal(err)
	}
	// An entry the inbox bridge refuses (cache:warm with no cache).
	if err := r.Client.LPush(ctx, k.Inbox(), `{"kind":"cache:warm","args":{"ids":[1]}}`).Err(); err != nil {
		t.Fatal(err)
	}
	base := startWorker(t, map[string]string{"CACHEKEEPER_REDIS_URL": r.URL}, "--config", cfgPath)

	// Wait for the bridge to dead-letter it (take the reason from the JSON)
	// and for the worker to mark user served (its first orphan pass, which
	// may come after the bridge's first batch).
	var reason string
	deadline := time.Now().Add(15 * time.Second)
	for {
		var st struct {
			Caches []struct {
				Name   string `json:"name"`
				Served bool   `json:"served"`
			} `json:"caches"`
			Inbox struct {
				Dead []struct {
					Reason string `json:"reason"`
				} `json:"dead"`
			} `json:"inbox"`
		}
		resp, err := httpGet(base + "/caches.json")
		if err == nil {
			err = json.Unmarshal(resp, &st)
		}
		served := false
		for _, c := range st.Caches {
			served = served || c.Name == "user" && c.Served
		}
		if err == nil && len(st.Inbox.Dead) > 0 && served {
			reason = st.Inbox.Dead[0].Reason
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no dead letter, or user not served, on /caches.json within 15s (%v): %s", err, resp)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("dead letter reason: %s", reason)

	bctx := browser(t, exe)

	step := func(what string, a chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(bctx, a); err != nil {
			t.Fatalf("chromium: %s: %v", what, err)
		}
	}
	text := func(sel string) string { t.Helper(); return pageText(t, bctx, sel) }
	attr := func(sel, name string) string {
		t.Helper()
		a, err := chromedp.Run(bctx, chromedp.AttributeValue(chromedp.CSS(sel), name))
		if err != nil {
			t.Fatalf("chromium: %s of %s: %v", name, sel, err)
		}
		return a.Value
	}
	step("open /caches", chromedp.Navigate(base+"/caches"))
	step("wait for the page", chromedp.WaitVisible(chromedp.CSS("main")))
	title, err := chromedp.Run(bctx, chromedp.Title())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot of /caches: %s", screenshot(t, bctx, "caches-page.png"))

	body := text("body")
	if refresh, ui := attr(`meta[http-equiv="refresh"]`, "content"), attr(`header a[href="/ui/"]`, "href"); title != "cachekeeper" || refresh == "" || ui != "/ui/" {
		t.Errorf("title %q, meta refresh %q, link to /ui/ %q", title, refresh, ui)
	}
	for _, want := range []string{"served", "misspelt in WarmCache", reason, "prune-rate-limits", "ratelimit:prune", "Worker processes"} {
		if !strings.Contains(body, want) {
			t.Errorf("the page in chromium does not show %q:\n%s", want, body)
		}
	}
	// Each cache's row: name, then its pending ids.
	rows := map[string]string{}
	for _, name := range []string{"user", "usr"} {
		rows[name] = text(`tr[data-cache="` + name + `"] td.pending`)
	}
	if rows["usr"] != "2" || rows["user"] == "" {
		t.Errorf("pending ids shown: %q, want usr 2 and a count for user", rows)
	}
	if p := text(`tr[data-cache="user"] td.served`); p != "served" {
		t.Errorf("user is shown %q, want served (this worker configures it)", p)
	}

	// Purge the dead letter through the page's own form.
	step("purge", chromedp.Click(chromedp.CSS(`form[action="/caches/dead/purge"] button`)))
	step("wait for the notice", chromedp.WaitVisible(chromedp.CSS(".note")))
	if notice := text(".note"); !strings.Contains(notice, "purged") {
		t.Errorf("after purge the page says %q", notice)
	}
	if n := r.Client.LLen(ctx, keys.DeadLetter(k.Inbox())).Val(); n != 0 {
		t.Errorf("%d dead letters after purging from the page", n)
	}
}

func httpGet(url string) ([]byte, error) {
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	return io.ReadAll(resp.Body)
}

// The change stream's section of the cachekeeper page, in a real headless
// Chromium, against a worker this test starts on a private PostgreSQL with
// wal_level=logical and a cache with changes:, while a stream reads the
// slot: it shows the holder, the confirmed position, the server position,
// the lag, the slot as active and the last report; a screenshot is saved.
func TestCachesPageShowsChangeStreamInBrowser(t *testing.T) {
	exe := chromium(t)
	pg, err := testenv.StartPostgres()
	testenv.RequireInstance(t, "private PostgreSQL with wal_level=logical", err)
	t.Cleanup(pg.Stop)
	db := pg.NewDatabase(t)
	if _, err := db.Exec("CREATE TABLE users (id BIGINT PRIMARY KEY, email TEXT); INSERT INTO users VALUES (1, 'ada@example.com')"); err != nil {
		t.Fatal(err)
	}
	r := testenv.NewRedis(t)
	ctx := context.Background()
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "cachekeeper.yaml")
	cfgText := "caches:\n  user:\n    key: \"user:{id}\"\n    ttl: 1h\n    by_ids: SELECT id, email FROM users WHERE id IN (?)\n" +
		"    changes: {table: users, id: id}\n"
	if err := os.WriteFile(cfgPath, []byte(cfgText), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"CACHEKEEPER_REDIS_URL": r.URL, "CACHEKEEPER_DATABASE_URL": db.Config.URL}

	// The stream, in this process, under a holder name the page must show.
	const holder = "browser-test-replica"
	stream, err := changes.New(changes.Config{
		Caches: map[string]config.CacheSpec{"user": {Key: "user:{id}", TTL: time.Hour, ByIDs: "SELECT id, email FROM users WHERE id IN (?)",
			Changes: config.ChangeSources{{Table: "users", ID: "id"}}}},
		Database: db.Config, Redis: r.Client, Holder: holder, StatusInterval: 100 * time.Millisecond,
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	sctx, stopStream := context.WithCancel(ctx)
	streamDone := make(chan error, 1)
	go func() { streamDone <- stream.Run(sctx) }()
	t.Cleanup(func() { // before the database is dropped (cleanups run last first)
		stopStream()
		if err := <-streamDone; err != nil {
			t.Errorf("stream: %v", err)
		}
	})
	base := startWorker(t, env, "--config", cfgPath)
	if _, err := db.Exec("UPDATE users SET email = 'ada@lovelace.example' WHERE id = 1"); err != nil {
		t.Fatal(err)
	}

	// Wait until the page's JSON shows the holder with a confirmed position.
	var position string
	deadline := time.Now().Add(20 * time.Second)
	for {
		var st struct {
			Changes []struct {
				Holder     string    `json:"holder"`
				Position   string    `json:"position"`
				Error      string    `json:"error"`
				ReportedAt time.Time `json:"reported_at"`
			} `json:"changes"`
		}
		resp, err := httpGet(base + "/caches.json")
		if err == nil {
			err = json.Unmarshal(resp, &st)
		}
		if err == nil && len(st.Changes) == 1 && st.Changes[0].Holder == holder && st.Changes[0].Position != "" && !st.Changes[0].ReportedAt.IsZero() {
			position = st.Changes[0].Position
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/caches.json did not show the stream held by %s within 20s (%v): %s", holder, err, resp)
		}
		time.Sleep(100 * time.Millisecond)
	}

	bctx := browser(t, exe)
	if err := chromedp.Do(bctx, chromedp.Navigate(base+"/caches")); err != nil {
		t.Fatalf("chromium: open /caches: %v", err)
	}
	if err := chromedp.Do(bctx, chromedp.WaitVisible(chromedp.CSS(`tr[data-stream="cachekeeper"]`))); err != nil {
		t.Fatalf("chromium: the page has no row for stream cachekeeper: %v", err)
	}
	t.Logf("screenshot of /caches with the change stream: %s", screenshot(t, bctx, "caches-page-changes.png"))
	text := func(sel string) string { t.Helper(); return pageText(t, bctx, sel) }
	row := `tr[data-stream="cachekeeper"] `
	if h := text(row + "td.holder"); h != holder {
		t.Errorf("holder shown %q, want %q", h, holder)
	}
	// The position only moves forward; the page may have been read later.
	want, err := pglogrepl.ParseLSN(position)
	if err != nil {
		t.Fatalf("/caches.json position %q: %v", position, err)
	}
	if p := text(row + "td.position"); p == "" {
		t.Error("no position shown")
	} else if got, err := pglogrepl.ParseLSN(p); err != nil || got < want {
		t.Errorf("position shown %q (%v), want an LSN at or after %s", p, err, position)
	}
	if l := text(row + "td.lag"); !strings.HasSuffix(l, "s") || !strings.Contains(l, "B, ") {
		t.Errorf("lag shown %q, want bytes and seconds", l)
	}
	body := text("body")
	for _, want := range []string{"Change stream", "(postgres)", "active", "retained", "changes/s", "pg_drop_replication_slot"} {
		if !strings.Contains(body, want) {
			t.Errorf("the page in chromium does not show %q:\n%s", want, body)
		}
	}
	if strings.Contains(body, "none: no replica") || strings.Contains(body, "inactive") {
		t.Errorf("the page shows the running stream as not held:\n%s", body)
	}
}

// pageText is the text of the first element sel selects.
func pageText(t *testing.T, bctx context.Context, sel string) string {
	t.Helper()
	s, err := chromedp.Run(bctx, chromedp.Text(chromedp.CSS(sel)))
	if err != nil {
		t.Fatalf("chromium: text of %s: %v", sel, err)
	}
	return s
}

// screenshot saves the whole page as name in the artifacts directory and
// returns its path.
func screenshot(t *testing.T, bctx context.Context, name string) string {
	t.Helper()
	png, err := chromedp.Run(bctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("chromium: screenshot: %v", err)
	}
	shot := filepath.Join(artifactDir(t), name)
	if err := os.WriteFile(shot, png, 0o644); err != nil {
		t.Fatal(err)
	}
	return shot
}

// browser starts a headless Chromium for one test.
func browser(t *testing.T, exe string) context.Context {
	t.Helper()
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(exe),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 1000),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	bctx, cancelBrowser := chromedp.NewContext(actx)
	bctx, cancelTimeout := context.WithTimeout(bctx, 60*time.Second)
	t.Cleanup(func() { cancelTimeout(); cancelBrowser(); cancelAlloc() })
	return bctx
}
