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

	"github.com/cachekeeper/cachekeeper/internal/keys"
	"github.com/cachekeeper/cachekeeper/internal/testenv"
	"github.com/chromedp/chromedp"
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

	// Wait for the bridge to dead-letter it; take the reason from the JSON.
	var reason string
	deadline := time.Now().Add(15 * time.Second)
	for reason == "" {
		var st struct {
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
		if err == nil && len(st.Inbox.Dead) > 0 {
			reason = st.Inbox.Dead[0].Reason
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no dead letter on /caches.json within 15s (%v): %s", err, resp)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("dead letter reason: %s", reason)

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
	actx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	defer cancelAlloc()
	bctx, cancelBrowser := chromedp.NewContext(actx)
	defer cancelBrowser()
	bctx, cancelTimeout := context.WithTimeout(bctx, 60*time.Second)
	defer cancelTimeout()

	step := func(what string, a chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(bctx, a); err != nil {
			t.Fatalf("chromium: %s: %v", what, err)
		}
	}
	text := func(sel string) string {
		t.Helper()
		s, err := chromedp.Run(bctx, chromedp.Text(chromedp.CSS(sel)))
		if err != nil {
			t.Fatalf("chromium: text of %s: %v", sel, err)
		}
		return s
	}
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
	png, err := chromedp.Run(bctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("chromium: screenshot: %v", err)
	}
	shot := filepath.Join(artifactDir(t), "caches-page.png")
	if err := os.WriteFile(shot, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot of /caches: %s", shot)

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
