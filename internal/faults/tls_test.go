package faults

import (
	"fmt"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/cachekeeper/cachekeeper/internal/testenv"
)

// TestWorkerOverTLS runs the worker process against redis-server with TLS
// and tls-auth-clients yes, trusting the test's CA and presenting its client
// certificate through redis.tls: the worker starts and runs jobs.
func TestWorkerOverTLS(t *testing.T) {
	t.Parallel()
	srv, f, tlsAddr := testenv.NewTLSServer(t)
	cfg := writeConfig(t, notifyConfig(fmt.Sprintf("redis:\n  url: \"redis://%s/0\"\n  tls: {ca_file: %q, cert_file: %q, key_file: %q, server_name: %q}",
		tlsAddr, f.CA, f.ClientCert, f.ClientKey, f.ServerName)))
	started := time.Now()
	startedWorker(t, "worker", cfg)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr}) // the plain port, for the test's checks
	defer rdb.Close()
	info, err := asynq.NewClientFromRedisClient(rdb).Enqueue(asynq.NewTask("notify:publish", []byte(`{"channel":"c","message":"m"}`)), asynq.Retention(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	insp := asynq.NewInspectorFromRedisClient(rdb)
	took := waitUntil(t, 20*time.Second, "job done over TLS", func() bool { return taskState(insp, info.Queue, info.ID) == asynq.TaskStateCompleted })
	t.Logf("worker over TLS (own CA, client certificate, server_name): job done %.2fs after enqueue, %.2fs after the worker was started", took.Seconds(), time.Since(started).Seconds())
}
