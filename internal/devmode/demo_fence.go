package devmode

import (
	"context"
	"database/sql/driver"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/cachekeeper/cachekeeper/events"
	"github.com/cachekeeper/cachekeeper/tasks"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"modernc.org/sqlite"
)

// The embedded SQLite's user query calls cachekeeper_demo_gate(id): it
// returns true at once, except for the one id DemoFencedWrite arms, whose
// read then waits (bounded) until the demo has invalidated that user. That
// is the race fencing exists for, made to happen on demand.
const demoGateFunc = "cachekeeper_demo_gate"

// DemoGate is one gate per dev run (the run's token is a literal of its
// query), so that runs in one process (tests) do not pause each other.
type DemoGate struct {
	mu      sync.Mutex
	id      int64
	hit     chan struct{} // closed when the armed id is read
	release chan struct{} // closed to let the read finish
	// shown is cachekeeper_fenced_writes_skipped_total when the last
	// DemoFencedWrite ended (-1 before the first), so the next can say what
	// else was refused meanwhile.
	shown float64
}

var (
	gatesMu sync.Mutex
	gates   = map[string]*DemoGate{}
	gateSeq int
)

func init() {
	sqlite.MustRegisterScalarFunction(demoGateFunc, 2, func(_ *sqlite.FunctionContext, args []driver.Value) (driver.Value, error) {
		id, _ := args[0].(int64)
		token, _ := args[1].(string)
		gatesMu.Lock()
		g := gates[token]
		gatesMu.Unlock()
		if g == nil {
			return int64(1), nil
		}
		g.mu.Lock()
		hit, release := g.hit, g.release
		armed := hit != nil && g.id == id
		if armed {
			g.hit = nil
		}
		g.mu.Unlock()
		if armed {
			close(hit)
			select {
			case <-release:
			case <-time.After(30 * time.Second): // never hold the worker longer
			}
		}
		return int64(1), nil
	})
}

// newGate makes a run's gate and the by_ids query that reads through it.
func newGate(byIDs string) (*DemoGate, string, func()) {
	gatesMu.Lock()
	defer gatesMu.Unlock()
	gateSeq++
	token := fmt.Sprintf("run%d", gateSeq)
	g := &DemoGate{shown: -1}
	gates[token] = g
	q := strings.TrimSuffix(byIDs, "IN (?)") + "IN (?) AND " + demoGateFunc + "(id, '" + token + "')"
	return g, q, func() { gatesMu.Lock(); delete(gates, token); gatesMu.Unlock() }
}

// DemoFencedWrite shows a fenced (skipped) write: a warm of user 30 reads its
// row, the user is invalidated before the warm writes, and the worker refuses
// the stale write (cachekeeper_fenced_writes_skipped_total goes up, user:30
// stays absent). It needs the embedded SQLite database (gate is nil
// otherwise) and metrics, the worker's registry.
func DemoFencedWrite(ctx context.Context, client *tasks.Client, rdb redis.UniversalClient, metrics prometheus.Gatherer, gate *DemoGate, out io.Writer) error {
	say := func(format string, a ...any) { fmt.Fprintf(out, "[fence] "+format+"\n", a...) }
	if gate == nil {
		say("not shown: it pauses a read of the embedded SQLite database, and this run uses --database-url")
		return nil
	}
	hit, release := make(chan struct{}), make(chan struct{})
	gate.mu.Lock()
	gate.id, gate.hit, gate.release = 30, hit, release
	gate.mu.Unlock()
	var once sync.Once
	open := func() { once.Do(func() { close(release) }) }
	defer func() {
		gate.mu.Lock()
		gate.hit = nil
		gate.mu.Unlock()
		open()
	}()
	received, stop, err := subscribeEvents(ctx, rdb)
	if err != nil {
		return err
	}
	defer stop()
	before := skippedWrites(metrics)
	gate.mu.Lock()
	last := gate.shown
	gate.mu.Unlock()
	if last >= 0 && before > last {
		say("%v other writes were refused since the last round: a warm still in flight when an invalidation of its keys ran (by id, pattern or tag) has those writes refused (cache misses, never stale values)", before-last)
	}
	if _, err := client.WarmCacheIDs(ctx, "user", []string{"30"}); err != nil {
		return err
	}
	select {
	case <-hit:
	case <-ctx.Done():
		return fmt.Errorf("the warm of user 30 did not read its row: %w", ctx.Err())
	}
	say("a warm of user 30 has read its row and is paused before writing it")
	info, err := client.InvalidateCache(ctx, "user", 30)
	if err != nil {
		return err
	}
	if _, err := waitEvent(ctx, received, func(e events.Event) bool { return e.TaskID == info.ID }); err != nil {
		return err
	}
	say("meanwhile user 30 changed: %s %s invalidated it", info.Type, info.ID)
	open()
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for skippedWrites(metrics) == before {
		select {
		case <-ctx.Done():
			return fmt.Errorf("the stale write of user 30 was not skipped: %w", ctx.Err())
		case <-t.C:
		}
	}
	after := skippedWrites(metrics)
	gate.mu.Lock()
	gate.shown = after
	gate.mu.Unlock()
	say("the warm's stale write was skipped (fenced): cachekeeper_fenced_writes_skipped_total{cache=\"user\"} %v -> %v; user:30 exists: %d",
		before, after, rdb.Exists(ctx, "user:30").Val())
	return nil
}

func skippedWrites(g prometheus.Gatherer) float64 {
	mfs, err := g.Gather()
	if err != nil {
		return -1
	}
	for _, mf := range mfs {
		if mf.GetName() != "cachekeeper_fenced_writes_skipped_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "cache" && l.GetValue() == "user" {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}
