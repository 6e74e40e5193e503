package changes

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cachekeeper/cachekeeper/internal/keys"
	"github.com/redis/go-redis/v9"
)

// progress is what the running source reports, read by the status writer.
type progress struct {
	mu         sync.Mutex
	position   string
	lagBytes   int64
	lagSeconds float64
	retained   int64
	rows       atomic.Int64
}

func (p *progress) set(position string, lagBytes int64, lagSeconds float64) {
	p.mu.Lock()
	p.position, p.lagBytes, p.lagSeconds = position, lagBytes, lagSeconds
	p.mu.Unlock()
}

// setPosition updates position and lag seconds, keeping the lag in bytes.
func (p *progress) setPosition(position string, lagSeconds float64) {
	p.mu.Lock()
	p.position, p.lagSeconds = position, lagSeconds
	p.mu.Unlock()
}

func (p *progress) setLagBytes(n int64) {
	p.mu.Lock()
	p.lagBytes = n
	p.mu.Unlock()
}

func (p *progress) setRetained(n int64) {
	p.mu.Lock()
	p.retained = n
	p.mu.Unlock()
}

// Status is what `cachekeeper changes status` prints.
type Status struct {
	Stream   string `json:"stream"`
	Database string `json:"database"`
	// Holder is the replica holding the lease ("" when none does).
	Holder string `json:"holder"`
	// Position is the last position whose changes are all enqueued (the
	// slot's confirmed_flush_lsn, or binlog file:position).
	Position string `json:"position"`
	// ServerPosition is the server's current WAL or binlog position.
	ServerPosition string `json:"server_position"`
	// LagBytes is ServerPosition minus Position (same binlog file only).
	LagBytes int64 `json:"lag_bytes"`
	// LagSeconds is the holder's last reported lag (seconds since the last
	// applied transaction committed; 0 when caught up).
	LagSeconds float64 `json:"lag_seconds"`
	// ChangesPerSecond is the holder's last reported rate.
	ChangesPerSecond float64 `json:"changes_per_second"`
	// RetainedBytes is the WAL the slot keeps on the primary (PostgreSQL).
	RetainedBytes int64 `json:"retained_wal_bytes,omitempty"`
	// SlotActive says whether a consumer is connected to the slot (PostgreSQL).
	SlotActive bool `json:"slot_active,omitempty"`
	// Exists is false when the slot (or stored position) does not exist yet.
	Exists bool `json:"exists"`
	// ReportedAt is when the holder last wrote its status (zero: never).
	ReportedAt time.Time `json:"reported_at"`
}

// report writes the status hash every StatusInterval and sets the gauges.
func (s *Stream) report(ctx context.Context, p *progress) {
	t := time.NewTicker(s.cfg.StatusInterval)
	defer t.Stop()
	key := s.keys.ChangesStatus(s.cfg.Name)
	lastRows, lastAt := int64(0), time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		rows, now := p.rows.Load(), time.Now()
		rate := float64(rows-lastRows) / now.Sub(lastAt).Seconds()
		lastRows, lastAt = rows, now
		p.mu.Lock()
		pos, lagB, lagS, ret := p.position, p.lagBytes, p.lagSeconds, p.retained
		p.mu.Unlock()
		s.metrics.LagBytes.Set(float64(lagB))
		s.metrics.LagSeconds.Set(lagS)
		_, err := s.cfg.Redis.TxPipelined(ctx, func(pl redis.Pipeliner) error {
			pl.HSet(ctx, key, map[string]any{
				"holder": s.cfg.Holder, "database": s.kind, "position": pos,
				"lag_bytes": lagB, "lag_seconds": strconv.FormatFloat(lagS, 'f', 3, 64),
				"changes_per_second": strconv.FormatFloat(rate, 'f', 1, 64),
				"retained_wal_bytes": ret, "reported_at": now.UnixMilli(),
			})
			pl.Expire(ctx, key, 7*24*time.Hour)
			return nil
		})
		if err != nil && ctx.Err() == nil {
			s.logger.Debug("changes: status not written", "error", err.Error())
		}
	}
}

// Status reads the stream's state: the lease holder and its last report
// from Redis, the slot or binlog position from the database.
func (s *Stream) Status(ctx context.Context) (Status, error) {
	st := Status{Stream: s.cfg.Name, Database: s.kind}
	holder, err := s.cfg.Redis.Get(ctx, s.lease.key).Result()
	if err != nil && !errors.Is(err, redis.Nil) {
		return st, err
	}
	st.Holder = holder
	h, err := s.cfg.Redis.HGetAll(ctx, s.keys.ChangesStatus(s.cfg.Name)).Result()
	if err != nil {
		return st, err
	}
	st.LagSeconds, _ = strconv.ParseFloat(h["lag_seconds"], 64)
	st.ChangesPerSecond, _ = strconv.ParseFloat(h["changes_per_second"], 64)
	if ms, err := strconv.ParseInt(h["reported_at"], 10, 64); err == nil {
		st.ReportedAt = time.UnixMilli(ms)
	}
	if holder == "" {
		st.LagSeconds, st.ChangesPerSecond = 0, 0
	}
	err = s.src.status(ctx, &st)
	return st, err
}

// Streams returns the names of the streams that have held their lease on
// rdb under keyPrefix (default "cachekeeper:"), sorted; a stream that never
// ran is not listed.
func Streams(ctx context.Context, rdb redis.UniversalClient, keyPrefix string) ([]string, error) {
	k, err := keys.New(keyPrefix)
	if err != nil {
		return nil, err
	}
	names, err := rdb.SMembers(ctx, k.ChangesStreams()).Result()
	if err != nil {
		return nil, fmt.Errorf("changes: list the streams: %w", err)
	}
	sort.Strings(names)
	return names, nil
}
