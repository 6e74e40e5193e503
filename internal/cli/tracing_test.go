package cli_test

import (
	"compress/gzip"
	"context"
	"database/sql"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/cachekeeper/cachekeeper/internal/keys"
	"github.com/cachekeeper/cachekeeper/internal/testenv"
)

// span is one span as an OTLP/HTTP receiver decoded it.
type span struct {
	service, name, trace, id, parent string
	attrs                            map[string]string
}

// otlpReceiver is a small OTLP/HTTP collector: it decodes the protobuf
// export requests sent to /v1/traces and keeps the spans.
type otlpReceiver struct {
	mu    sync.Mutex
	spans []span
	posts int
}

func (rc *otlpReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/v1/traces" || r.Header.Get("Content-Type") != "application/x-protobuf" {
		http.Error(w, "want POST /v1/traces of application/x-protobuf", http.StatusBadRequest)
		return
	}
	var body io.Reader = r.Body
	if r.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		body = zr
	}
	data, err := io.ReadAll(body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var req coltracepb.ExportTraceServiceRequest
	if err := proto.Unmarshal(data, &req); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	rc.mu.Lock()
	rc.posts++
	for _, rs := range req.ResourceSpans {
		service := ""
		for _, a := range rs.GetResource().GetAttributes() {
			if a.Key == "service.name" {
				service = a.GetValue().GetStringValue()
			}
		}
		for _, ss := range rs.ScopeSpans {
			for _, s := range ss.Spans {
				attrs := map[string]string{}
				for _, a := range s.Attributes {
					v := a.GetValue()
					attrs[a.Key] = v.GetStringValue()
					if v.GetStringValue() == "" {
						attrs[a.Key] = fmt.Sprint(v.GetIntValue())
					}
				}
				rc.spans = append(rc.spans, span{service: service, name: s.Name, trace: hex.EncodeToString(s.TraceId),
					id: hex.EncodeToString(s.SpanId), parent: hex.EncodeToString(s.ParentSpanId), attrs: attrs})
			}
		}
	}
	rc.mu.Unlock()
	out, _ := proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
	w.Header().Set("Content-Type", "application/x-protobuf")
	_, _ = w.Write(out)
}

func (rc *otlpReceiver) all() []span {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]span(nil), rc.spans...)
}

// find returns the spans matching f.
func find(spans []span, f func(span) bool) []span {
	var out []span
	for _, s := range spans {
		if f(s) {
			out = append(out, s)
		}
	}
	return out
}

// With the OTEL_* variables set, a job's trace runs from its producer (the
// CLI's enqueue, or an inbox entry's traceparent) through the worker's job
// span to the job's SQL queries and Redis commands, exported over OTLP/HTTP
// to a real receiver.
func TestTracingEndToEndOverOTLPHTTP(t *testing.T) {
	t.Parallel()
	rc := &otlpReceiver{}
	srv := httptest.NewServer(rc)
	defer srv.Close()
	r := testenv.NewRedis(t)
	dir := t.TempDir()
	dbPath := filepath.Join(dir, "app.db")
	db, err := sql.Open("sqlite", dbPath)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec("CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT); INSERT INTO users VALUES (1, 'a@x'), (2, 'b@x')"); err != nil {
		t.Fatal(err)
	}
	_ = db.Close()
	cfgPath := filepath.Join(dir, "ck.yaml")
	body := fmt.Sprintf("redis:\n  url: %s\ndatabase:\n  url: sqlite://%s\n"+
		"caches:\n  user:\n    key: \"user:{id}\"\n    ttl: 1h\n    by_ids: \"SELECT id, email FROM users WHERE id IN (?)\"\n", r.URL, dbPath)
	if err := os.WriteFile(cfgPath, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{
		"OTEL_TRACES_EXPORTER":        "otlp",
		"OTEL_EXPORTER_OTLP_ENDPOINT": srv.URL,
		"OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	wctx, stopWorker := context.WithCancel(ctx)
	worker := make(chan result, 1)
	go func() {
		worker <- run(t, wctx, env, "worker", "-c", cfgPath, "--metrics-addr", "", "--servers", "1", "--log-level", "error")
	}()

	// A producer in the CLI.
	res := run(t, ctx, env, "enqueue", "warm", "-c", cfgPath, "--cache", "user", "--id", "1", "--id", "2", "--wait", "--wait-timeout", "20s")
	if res.code != 0 {
		t.Fatalf("enqueue warm --wait: %+v", res)
	}
	// A producer in another language, through the inbox.
	const traceID, parentID = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	ps := r.Client.Subscribe(ctx, "c")
	defer ps.Close()
	if _, err := ps.Receive(ctx); err != nil {
		t.Fatal(err)
	}
	r.Client.LPush(ctx, keys.Default().Inbox(), `{"kind":"notify:publish","args":{"channel":"c","message":"m"},"traceparent":"00-`+traceID+`-`+parentID+`-01"}`)
	select {
	case <-ps.Channel():
	case <-time.After(20 * time.Second):
		t.Fatal("the inbox entry's job did not publish within 20s")
	}
	// The worker's spans are flushed when it stops.
	time.Sleep(500 * time.Millisecond)
	stopWorker()
	if res := <-worker; res.code != 0 {
		t.Fatalf("worker: %+v", res)
	}
	spans := rc.all()
	t.Logf("%d spans in %d OTLP/HTTP posts", len(spans), rc.posts)

	// CLI producer -> worker job -> SQL and Redis.
	producers := find(spans, func(s span) bool { return s.name == "enqueue cache:warm" && s.service == "cachekeeper-cli" })
	if len(producers) != 1 || producers[0].parent != "" {
		t.Fatalf("CLI producer spans %+v; want one root span", producers)
	}
	p := producers[0]
	jobs := find(spans, func(s span) bool { return s.name == "job cache:warm" && s.parent == p.id && s.trace == p.trace })
	if len(jobs) != 1 || jobs[0].service != "cachekeeper-worker" || jobs[0].attrs["messaging.destination.name"] != "default" {
		t.Fatalf("job spans under the CLI's producer: %+v (all: %+v)", jobs, spans)
	}
	job := jobs[0]
	sqls := find(spans, func(s span) bool { return s.parent == job.id && strings.HasPrefix(s.name, "sql SELECT") })
	if len(sqls) != 1 || !strings.Contains(sqls[0].attrs["db.query.text"], "FROM users WHERE id IN") {
		t.Fatalf("SQL spans under the job: %+v", sqls)
	}
	redisSpans := find(spans, func(s span) bool { return s.parent == job.id && strings.HasPrefix(s.name, "redis ") })
	if len(redisSpans) == 0 {
		t.Fatalf("no Redis span under the job; spans: %+v", spans)
	}

	// Inbox traceparent -> bridge's producer span -> job -> Redis PUBLISH.
	inTrace := find(spans, func(s span) bool { return s.trace == traceID })
	ip := find(inTrace, func(s span) bool { return s.name == "enqueue notify:publish" && s.parent == parentID })
	if len(ip) != 1 {
		t.Fatalf("no producer span under the inbox entry's traceparent; trace %s: %+v", traceID, inTrace)
	}
	ij := find(inTrace, func(s span) bool { return s.name == "job notify:publish" && s.parent == ip[0].id })
	if len(ij) != 1 {
		t.Fatalf("no job span under the inbox producer: %+v", inTrace)
	}
	if pub := find(inTrace, func(s span) bool { return s.name == "redis PUBLISH" && s.parent == ij[0].id }); len(pub) != 1 {
		t.Fatalf("no PUBLISH span under the notify job: %+v", inTrace)
	}
	t.Logf("CLI trace %s: producer %s -> job %s -> %d SQL, %d Redis spans; inbox trace %s: producer -> job -> PUBLISH",
		p.trace, p.id, job.id, len(sqls), len(redisSpans), traceID)

	// Bad settings are refused in one line.
	res = run(t, ctx, map[string]string{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json", "CACHEKEEPER_REDIS_URL": r.URL},
		"enqueue", "notify", "--channel", "c", "--message", "m")
	if res.code != 2 || !strings.Contains(res.stderr, `OTEL_EXPORTER_OTLP_PROTOCOL="http/json" is not supported: use http/protobuf or grpc`) {
		t.Fatalf("http/json: %+v", res)
	}
}
