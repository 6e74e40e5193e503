package scheduler

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/cachekeeper/cachekeeper/tasks"
	"github.com/hibiken/asynq"
)

// Retention bounds: a tick's task record is kept for twice the entry's
// interval, within these limits.
const (
	MinRetention = 10 * time.Minute
	MaxRetention = 24 * time.Hour
)

// Entry is a validated schedule entry, ready to make tasks.
type Entry struct {
	EntryConfig
	// Series identifies the entry's definition: "schedule:<name>:<hash>",
	// the hash covering kind, canonical arguments and queue. Tick task ids
	// are Series + ":" + Unix seconds.
	Series string
	// QueueName is the queue the tasks go to (the override or the kind's default).
	QueueName string
	// Retention is how long a completed tick's record is kept, refusing a
	// late duplicate of that tick from another replica.
	Retention time.Duration

	payload tasks.Payload
	sched   Schedule
	clock   Clock
}

// ParseEntries validates entries (names unique, schedules, time zones, kinds
// and arguments) and returns them ready to use, in the same order. The
// entries' Next uses the real clock.
func ParseEntries(entries []EntryConfig) ([]Entry, error) {
	return parseEntries(entries, RealClock())
}

func parseEntries(entries []EntryConfig, clock Clock) ([]Entry, error) {
	if err := ValidateEntries(entries); err != nil {
		return nil, err
	}
	out := make([]Entry, 0, len(entries))
	for _, ce := range entries {
		e, err := newEntry(ce, clock)
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, nil
}

func newEntry(ce EntryConfig, clock Clock) (Entry, error) {
	sched, err := ParseSchedule(ce.Schedule, ce.TimeZone)
	if err != nil {
		return Entry{}, fmt.Errorf("schedule.%s.schedule: %w", ce.Name, err)
	}
	p, err := ce.Payload()
	if err != nil {
		return Entry{}, fmt.Errorf("schedule.%s.args: %w", ce.Name, err)
	}
	info, _ := tasks.Lookup(ce.Kind)
	queue := info.Queue
	if ce.Queue != "" {
		queue = ce.Queue
	}
	canon, err := json.Marshal(p)
	if err != nil {
		return Entry{}, fmt.Errorf("schedule.%s.args: encode: %w", ce.Name, err)
	}
	h := sha256.New()
	h.Write([]byte(ce.Kind))
	h.Write([]byte{0})
	h.Write(canon)
	h.Write([]byte{0})
	h.Write([]byte(queue))
	series := "schedule:" + ce.Name + ":" + hex.EncodeToString(h.Sum(nil))[:8]
	return Entry{
		EntryConfig: ce,
		Series:      series,
		QueueName:   queue,
		Retention:   retention(sched, clock.Now()),
		payload:     p,
		sched:       sched,
		clock:       clock,
	}, nil
}

// retention is twice the longest of the next three gaps between ticks,
// clamped to [MinRetention, MaxRetention].
func retention(sched Schedule, now time.Time) time.Duration {
	var longest time.Duration
	t := sched.Next(now)
	for i := 0; i < 3 && !t.IsZero(); i++ {
		n := sched.Next(t)
		if n.IsZero() {
			break
		}
		if gap := n.Sub(t); gap > longest {
			longest = gap
		}
		t = n
	}
	r := 2 * longest
	switch {
	case r < MinRetention:
		return MinRetention
	case r > MaxRetention:
		return MaxRetention
	}
	return r
}

// Payload returns the entry's decoded, validated arguments.
func (e Entry) Payload() tasks.Payload { return e.payload }

// Next returns the next n tick times after now, in the entry's time zone.
func (e Entry) Next(n int) []time.Time { return e.NextAfter(e.clock.Now(), n) }

// NextAfter returns the first n tick times strictly after t (fewer when the
// schedule ends), in the entry's time zone.
func (e Entry) NextAfter(t time.Time, n int) []time.Time {
	loc, err := LoadLocation(e.TimeZone)
	if err != nil {
		loc = time.UTC
	}
	out := make([]time.Time, 0, max(n, 0))
	for i := 0; i < n; i++ {
		t = e.sched.Next(t)
		if t.IsZero() {
			break
		}
		out = append(out, t.In(loc))
	}
	return out
}

// TaskID is the asynq task id of the entry's tick at tick (whole seconds).
func (e Entry) TaskID(tick time.Time) string {
	return e.Series + ":" + strconv.FormatInt(tick.Unix(), 10)
}

// runNowID is an id that never equals a tick's id.
func (e Entry) runNowID() (string, error) {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("random task id: %w", err)
	}
	return e.Series + ":now:" + hex.EncodeToString(b[:]), nil
}

// newTask builds the task with the kind's defaults, then id, retention and
// the entry's overrides.
func (e Entry) newTask(id string, retention time.Duration) (*asynq.Task, error) {
	opts := []tasks.Option{tasks.TaskID(id)}
	if retention > 0 {
		opts = append(opts, tasks.Retention(retention))
	}
	if e.Queue != "" {
		opts = append(opts, tasks.Queue(e.Queue))
	}
	if e.Timeout > 0 {
		opts = append(opts, tasks.Timeout(e.Timeout))
	}
	t, err := tasks.NewTask(e.payload, opts...)
	if err != nil {
		return nil, fmt.Errorf("schedule.%s: build task: %w", e.Name, err)
	}
	return t, nil
}

// sameTicks reports whether a and b tick at the same times.
func sameTicks(a, b Entry) bool {
	return a.Schedule == b.Schedule && a.TimeZone == b.TimeZone
}

// lastTick returns the latest tick of sched in (after, now], or the zero
// time when there is none. It looks back in doubling windows so that a long
// gap costs a few dozen Next calls, not one per missed tick.
func lastTick(sched Schedule, after, now time.Time) time.Time {
	if !now.After(after) {
		return time.Time{}
	}
	for w := time.Second; ; w *= 2 {
		from := now.Add(-w)
		bounded := !from.After(after)
		if bounded {
			from = after
		}
		t := sched.Next(from)
		if !t.IsZero() && !t.After(now) {
			for {
				n := sched.Next(t)
				if n.IsZero() || n.After(now) {
					return t
				}
				t = n
			}
		}
		if bounded || w > 10*366*24*time.Hour {
			return time.Time{}
		}
	}
}
