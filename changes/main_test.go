package changes_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cachekeeper/cachekeeper/changes"
	"github.com/cachekeeper/cachekeeper/config"
	"github.com/cachekeeper/cachekeeper/internal/testenv"
	"github.com/cachekeeper/cachekeeper/tasks"
	"github.com/cachekeeper/cachekeeper/worker"
	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"
)

// pg is the package's private PostgreSQL cluster (wal_level=logical); each
// test gets its own database on it. pgErr is why it did not start.
var (
	pg    *testenv.PostgresInstance
	pgErr error
	my    *testenv.MariaDBInstance
	myErr error
)

// helperEnv makes the test binary a `changes` reader process (for tests
// that kill it with a real signal).
const helperEnv = "CACHEKEEPER_CHANGES_HELPER"

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) == "1" {
		os.Exit(runHelper())
	}
	// Both servers start at once: a few seconds for the package.
	started := make(chan struct{})
	go func() {
		defer close(started)
		my, myErr = testenv.StartMariaDB()
	}()
	pg, pgErr = testenv.StartPostgres()
	<-started
	code := 0
	func() {
		defer pg.Stop()
		defer my.Stop()
		code = m.Run()
	}()
	if code == 0 {
		if err := goleak.Find(
			goleak.IgnoreTopFunction("github.com/redis/go-redis/v9/internal/pool.(*ConnPool).reaper"),
			goleak.IgnoreTopFunction("internal/poll.runtime_pollWait"),
			// vitess's MySQL client logs through glog, whose init starts this.
			goleak.IgnoreTopFunction("github.com/golang/glog.(*fileSink).flushDaemon"),
		); err != nil {
			fmt.Fprintf(os.Stderr, "goleak: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

// userCaches is the users cache followed from table users, plus a tagged
// cache fed from memberships.
func userCaches(action string) map[string]config.CacheSpec { return cachesFor("postgres", action) }

// cachesFor is userCaches for a database kind (MySQL has no schema public).
func cachesFor(kind, action string) map[string]config.CacheSpec {
	c := config.DemoCaches()
	u := c["user"]
	u.Changes = config.ChangeSources{{Table: "users", ID: "id", Action: action}}
	u.Tags = []string{"org:{org_id}"}
	u.ByIDs = "SELECT id, email, full_name AS name, org_id FROM users WHERE id IN (?)"
	u.All = ""
	c["user"] = u
	c["member"] = config.CacheSpec{
		Key: "member:{id}", TTL: time.Hour, ByIDs: "SELECT id, org_id FROM memberships WHERE id IN (?)",
		Changes: config.ChangeSources{{Table: "public.memberships", Tags: []string{"org:{org_id}"}}},
	}
	if kind == "mysql" {
		c["member"].Changes[0].Table = "memberships"
	}
	return c
}

// bundle is one test's database, Redis, worker and stream.
type bundle struct {
	db     *testenv.DB
	redis  *testenv.Redis
	rdb    *redis.Client
	cfg    config.Config
	client *tasks.Client
	reg    *prometheus.Registry
	stream *changes.Stream
}

// setup gives the test its own database (with users and memberships), its
// own Redis and a running worker; the stream is built, not started.
func setup(t *testing.T, edit func(*config.Config, *changes.Config), before ...func(*testenv.DB)) *bundle {
	return setupOn(t, "postgres", edit, before...)
}

// kinds are the databases with a change stream, for tests run on each.
var kinds = []string{"postgres", "mysql"}

// setupOn is setup on a database of the given kind (postgres or mysql).
func setupOn(t *testing.T, kind string, edit func(*config.Config, *changes.Config), before ...func(*testenv.DB)) *bundle {
	t.Helper()
	var db *testenv.DB
	if kind == "mysql" {
		testenv.RequireInstance(t, "private MariaDB with the binlog on", myErr)
		db = my.NewDatabase(t)
		mustExec(t, db, "CREATE TABLE users (id BIGINT PRIMARY KEY, email VARCHAR(200) NOT NULL, full_name VARCHAR(200), org_id BIGINT)")
		mustExec(t, db, "CREATE TABLE memberships (id BIGINT PRIMARY KEY, org_id BIGINT NOT NULL)")
	} else {
		testenv.RequireInstance(t, "private PostgreSQL with wal_level=logical", pgErr)
		db = pg.NewDatabase(t)
		mustExec(t, db, "CREATE TABLE users (id BIGINT PRIMARY KEY, email TEXT NOT NULL, full_name TEXT, org_id BIGINT)")
		mustExec(t, db, "CREATE TABLE memberships (id BIGINT PRIMARY KEY, org_id BIGINT NOT NULL)")
		mustExec(t, db, "ALTER TABLE memberships REPLICA IDENTITY FULL")
	}
	for _, f := range before {
		f(db)
	}
	r := testenv.NewRedis(t)
	cfg := config.Default()
	cfg.Redis = r.Config
	cfg.Database = db.Config
	cfg.Worker.MetricsAddr = ""
	cfg.Worker.Servers = 1
	cfg.Worker.Concurrency = 4
	cfg.Worker.TaskCheckInterval = 10 * time.Millisecond
	cfg.Worker.ShutdownTimeout = 2 * time.Second
	cfg.Caches = cachesFor(kind, "")
	sc := changes.Config{Redis: r.Client, Name: "s" + strings.TrimPrefix(dbName(db), "ck_"), LeaseTTL: 2 * time.Second, StatusInterval: 100 * time.Millisecond}
	if edit != nil {
		edit(&cfg, &sc)
	}
	sc.Caches, sc.Database = cfg.Caches, cfg.Database
	reg := prometheus.NewRegistry()
	sc.Registerer = reg
	b := &bundle{db: db, redis: r, rdb: r.Client, cfg: cfg, client: tasks.NewClientFromRedis(r.Client), reg: reg}
	w, err := worker.New(cfg, worker.Deps{Redis: r.Client, DB: db.DB, Client: b.client, Registry: prometheus.NewRegistry()}, quiet())
	if err != nil {
		t.Fatal(err)
	}
	runUntilCleanup(t, "worker", w.Run)
	waitFor(t, 5*time.Second, w.Ready)
	if b.stream, err = changes.New(sc, testLogger(t)); err != nil {
		t.Fatal(err)
	}
	return b
}

func dbName(db *testenv.DB) string {
	var n string
	if db.Kind == "mysql" {
		_ = db.Get(&n, "SELECT DATABASE()")
	} else {
		_ = db.Get(&n, "SELECT current_database()")
	}
	return n
}

// start runs the stream until the test ends and waits until it streams.
func (b *bundle) start(t *testing.T) {
	t.Helper()
	runUntilCleanup(t, "stream", b.stream.Run)
	b.waitStreaming(t)
}

// waitStreaming waits until a holder reports (it has prepared the slot or
// kept the binlog position: every later change is followed).
func (b *bundle) waitStreaming(t *testing.T) {
	t.Helper()
	waitFor(t, 20*time.Second, func() bool {
		st, err := b.stream.Status(context.Background())
		return err == nil && st.Holder != "" && !st.ReportedAt.IsZero() && (st.SlotActive || b.db.Kind == "mysql")
	})
}

// runUntilCleanup runs fn in a goroutine until the test ends.
func runUntilCleanup(t *testing.T, what string, fn func(context.Context) error) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- fn(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("%s: %v", what, err)
			}
		case <-time.After(15 * time.Second):
			t.Errorf("%s did not stop within 15s", what)
		}
	})
}

func mustExec(t *testing.T, db *testenv.DB, sql string, args ...any) {
	t.Helper()
	if _, err := db.Exec(sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// seed inserts users 1..n and caches each as user:{id}.
func (b *bundle) seed(t *testing.T, n int) {
	t.Helper()
	if b.db.Kind == "mysql" {
		mustExec(t, b.db, fmt.Sprintf("INSERT INTO users SELECT seq, CONCAT('u', seq, '@x'), 'v0', seq %% 3 FROM seq_1_to_%d", n))
	} else {
		mustExec(t, b.db, "INSERT INTO users SELECT g, 'u' || g || '@x', 'v0', g % 3 FROM generate_series(1, $1) g", n)
	}
	b.cacheKeys(t, 1, n)
}

// cacheKeys writes user:{from..to} as if a warm had (unfenced fixture data).
func (b *bundle) cacheKeys(t *testing.T, from, to int) {
	t.Helper()
	ctx := context.Background()
	p := b.rdb.Pipeline()
	for i := from; i <= to; i++ {
		p.HSet(ctx, fmt.Sprintf("user:%d", i), "id", i, "email", "cached")
	}
	if _, err := p.Exec(ctx); err != nil {
		t.Fatal(err)
	}
}

func (b *bundle) exists(keys ...string) int64 {
	return b.rdb.Exists(context.Background(), keys...).Val()
}

func (b *bundle) batches(kind string) float64 {
	return testutil.ToFloat64(b.stream.Metrics().Batches.WithLabelValues(kind))
}

func waitFor(t *testing.T, d time.Duration, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	deadline := start.Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %s", d)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return time.Since(start)
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// testLogger logs warnings and errors through t.Log.
func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// helper is a `changes` reader in its own process.
type helper struct {
	cmd  *exec.Cmd
	done chan struct{}
	log  *strings.Builder
}

// startHelper runs the stream of b's database and Redis in a child process
// (this test binary in helper mode) named holder.
func (b *bundle) startHelper(t *testing.T, holder string) *helper {
	t.Helper()
	return b.startHelperOn(t, holder, b.cfg.Database.URL)
}

// startHelperOn is startHelper reaching the database at dbURL (a proxy).
func (b *bundle) startHelperOn(t *testing.T, holder, dbURL string) *helper {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"=1",
		"HELPER_DB="+dbURL, "HELPER_REDIS="+b.redis.URL, "HELPER_HOLDER="+holder,
		"HELPER_NAME="+"s"+strings.TrimPrefix(dbName(b.db), "ck_"), "HELPER_KIND="+b.db.Kind)
	h := &helper{cmd: cmd, done: make(chan struct{}), log: &strings.Builder{}}
	cmd.Stderr = &lockedWriter{b: h.log}
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = cmd.Wait(); close(h.done) }()
	t.Cleanup(func() {
		h.kill(t, syscall.SIGKILL)
		if t.Failed() {
			t.Logf("helper %s log:\n%s", holder, h.log.String())
		}
	})
	return h
}

// kill sends sig and waits for the process to end.
func (h *helper) kill(t *testing.T, sig syscall.Signal) {
	_ = h.cmd.Process.Signal(sig)
	select {
	case <-h.done:
	case <-time.After(15 * time.Second):
		_ = h.cmd.Process.Kill()
		<-h.done
		t.Errorf("helper did not exit on %v within 15s", sig)
	}
}

type lockedWriter struct {
	b *strings.Builder
}

func (w *lockedWriter) Write(p []byte) (int, error) { return w.b.Write(p) }

// runHelper is main of the helper process: it follows the stream until
// SIGTERM or SIGINT.
func runHelper() int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	rc := config.RedisConfig{URL: os.Getenv("HELPER_REDIS")}
	rdb, err := rc.NewClient()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer rdb.Close()
	s, err := changes.New(changes.Config{
		Caches: cachesFor(os.Getenv("HELPER_KIND"), ""), Database: config.DatabaseConfig{URL: os.Getenv("HELPER_DB")},
		Redis: rdb, Name: os.Getenv("HELPER_NAME"), Holder: os.Getenv("HELPER_HOLDER"),
		LeaseTTL: 2 * time.Second, StatusInterval: 100 * time.Millisecond,
	}, slog.New(slog.NewTextHandler(os.Stderr, nil)))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if err := s.Run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

func (b *bundle) inspector(t *testing.T) *asynq.Inspector {
	opt, _ := b.cfg.Redis.ConnOpt()
	insp := asynq.NewInspector(opt)
	t.Cleanup(func() { _ = insp.Close() })
	return insp
}
