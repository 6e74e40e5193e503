package httpapi

import (
	"cmp"
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/cachekeeper/cachekeeper/changes"
	"github.com/cachekeeper/cachekeeper/internal/inbox"
	"github.com/cachekeeper/cachekeeper/internal/keys"
	"github.com/cachekeeper/cachekeeper/scheduler"
	"github.com/cachekeeper/cachekeeper/tasks"
	"github.com/cachekeeper/cachekeeper/worker"
	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/redis/go-redis/v9"
)

// Paths of the cachekeeper page.
const (
	CachesPath     = "/caches"
	CachesJSONPath = "/caches.json"
	cachesReplay   = "/caches/dead/replay"
	cachesPurge    = "/caches/dead/purge"
)

// cachesRefresh is how often the page reloads itself (meta refresh).
const cachesRefresh = 10

// deadShown caps the dead letters listed on the page (the count is exact).
const deadShown = 100

//go:embed caches.html
var cachesHTML string

var cachesTmpl = template.Must(template.New("caches").Funcs(template.FuncMap{
	"ts": func(t time.Time) string {
		if t.IsZero() {
			return "-"
		}
		return t.UTC().Format("2006-01-02 15:04:05Z")
	},
	"bytes": func(n int64) string {
		switch {
		case n >= 1<<30:
			return strconv.FormatFloat(float64(n)/(1<<30), 'f', 1, 64) + " GiB"
		case n >= 1<<20:
			return strconv.FormatFloat(float64(n)/(1<<20), 'f', 1, 64) + " MiB"
		case n >= 1<<10:
			return strconv.FormatFloat(float64(n)/(1<<10), 'f', 1, 64) + " KiB"
		}
		return strconv.FormatInt(n, 10) + " B"
	},
	"ago": func(t time.Time) string {
		if t.IsZero() {
			return "never"
		}
		return time.Since(t).Round(time.Second).String() + " ago"
	},
	"pct": func(done, total int64) string {
		if total <= 0 {
			return ""
		}
		return strconv.FormatFloat(100*float64(min(done, total))/float64(total), 'f', 1, 64) + "%"
	},
}).Parse(cachesHTML))

// CachesSource is what the cachekeeper page reads on each request.
type CachesSource struct {
	Inspector *asynq.Inspector
	Redis     redis.UniversalClient
	Keys      keys.Keys
	// Caches are the configured cache names.
	Caches []string
	// InboxKey is the inbox list ("" when the inbox is disabled).
	InboxKey string
	// Schedule holds the configured schedule entries; ScheduleErr says why
	// the schedule section could not be parsed.
	Schedule    []scheduler.Entry
	ScheduleErr string
	// Gatherer is the worker's registry (fenced writes skipped, keys).
	Gatherer prometheus.Gatherer
	// ReadOnly hides and refuses replay and purge.
	ReadOnly bool
	// UIPath links to asynqmon ("" when the UI is off).
	UIPath string
	// ChangeStreams reads the database change streams (`cachekeeper
	// changes`) as `cachekeeper changes status` prints them; nil when no
	// cache has a changes: block (the page then has no such section).
	ChangeStreams func(ctx context.Context) []ChangeStream
	Logger        *slog.Logger
}

// CachesState is the page's data, as served by /caches.json.
type CachesState struct {
	Time          time.Time       `json:"time"`
	ReadOnly      bool            `json:"read_only"`
	UIPath        string          `json:"ui_path,omitempty"`
	Caches        []CacheState    `json:"caches"`
	Keys          []KeysCount     `json:"keys"`
	Inbox         *InboxState     `json:"inbox,omitempty"`
	Schedule      []ScheduleState `json:"schedule"`
	ScheduleError string          `json:"schedule_error,omitempty"`
	Processes     []ProcessState  `json:"processes"`
	// Changes are the database change streams (absent without changes:).
	Changes []ChangeStream `json:"changes,omitempty"`
}

// ChangeStream is one database change stream: what `cachekeeper changes
// status` prints (position, server position, lag, holder, rate, retained
// WAL), or why it could not be read.
type ChangeStream struct {
	changes.Status
	// Error says why the status could not be read (database or Redis
	// unreachable); the fields read before it are kept.
	Error string `json:"error,omitempty"`
}

// CacheState is one cache.
type CacheState struct {
	Name string `json:"name"`
	// Configured is false for a name WarmCache was called with that this
	// worker's configuration does not know.
	Configured bool `json:"configured"`
	// PendingIDs counts coalesced ids not yet turned into a job.
	PendingIDs int64 `json:"pending_ids"`
	// Served: a running worker takes this cache's pending ids.
	Served bool `json:"served"`
	// FencedWritesSkipped is this worker process's counter.
	FencedWritesSkipped float64        `json:"fenced_writes_skipped"`
	WarmAll             *WarmAllState  `json:"warm_all,omitempty"`
	Checkpoint          *CheckpointRec `json:"checkpoint,omitempty"`
}

// WarmAllState is the running or last cache:warm_all task of a cache.
type WarmAllState struct {
	TaskID   string                  `json:"task_id"`
	Queue    string                  `json:"queue"`
	State    string                  `json:"state"`
	Progress *worker.WarmAllProgress `json:"progress,omitempty"`
	LastErr  string                  `json:"last_error,omitempty"`
	// When is the completion time, or the start for a running task.
	When time.Time `json:"when,omitzero"`
}

// CheckpointRec is a whole-table warm's saved position.
type CheckpointRec struct {
	TaskID    string    `json:"task_id"`
	LastID    string    `json:"last_id"`
	RowsDone  int64     `json:"rows_done"`
	StartedAt time.Time `json:"started_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// KeysCount is cachekeeper_keys_total for one kind and action.
type KeysCount struct {
	Kind   string  `json:"kind"`
	Action string  `json:"action"`
	Count  float64 `json:"count"`
}

// InboxState is the inbox's dead-letter list.
type InboxState struct {
	Key         string       `json:"key"`
	DeadLetters int64        `json:"dead_letters"`
	Dead        []DeadLetter `json:"dead"`
}

// DeadLetter is one rejected inbox entry; Record identifies it for replay
// and purge.
type DeadLetter struct {
	// Entry is the start of the entry (deadShownBytes at most).
	Entry  string    `json:"entry"`
	Reason string    `json:"reason"`
	Time   time.Time `json:"time,omitzero"`
	// Record is the dead letter as stored, the handle of replay and purge;
	// "" for a record too large to put in the page (use the CLI).
	Record string `json:"record"`
	// Size is the entry's size in bytes; Truncated says Entry is only its
	// start.
	Size      int  `json:"size,omitempty"`
	Truncated bool `json:"truncated,omitempty"`
	// NotUTF8: the entry is not UTF-8 text (its exact bytes are kept).
	NotUTF8 bool `json:"not_utf8,omitempty"`
}

// deadShownBytes and deadRecordMax bound what one dead letter adds to the
// page, whatever was stored (records written before inbox.max_entry_bytes
// held whole entries of any size).
const (
	deadShownBytes = 2 << 10
	deadRecordMax  = 64 << 10
)

func deadLetterShown(r inbox.DeadRecord) DeadLetter {
	d := DeadLetter{Entry: r.Entry, Reason: r.Error, Time: r.Time, Record: r.Raw,
		Size: r.Size, Truncated: r.Truncated, NotUTF8: r.EntryBase64 != ""}
	if d.Size == 0 {
		d.Size = len(r.Entry)
	}
	if len(d.Entry) > deadShownBytes {
		d.Entry, d.Truncated = strings.ToValidUTF8(d.Entry[:deadShownBytes], ""), true
	}
	if len(d.Reason) > deadShownBytes {
		d.Reason = strings.ToValidUTF8(d.Reason[:deadShownBytes], "") + " ..."
	}
	if len(d.Record) > deadRecordMax {
		d.Record = ""
	}
	return d
}

// ScheduleState is one schedule entry.
type ScheduleState struct {
	Name     string      `json:"name"`
	Schedule string      `json:"schedule"`
	Kind     string      `json:"kind"`
	Queue    string      `json:"queue"`
	Next     []time.Time `json:"next"`
	LastTick time.Time   `json:"last_tick,omitzero"`
}

// ProcessState is one worker process (host and pid) and its asynq servers.
type ProcessState struct {
	Host          string         `json:"host"`
	PID           int            `json:"pid"`
	Concurrency   int            `json:"concurrency"`
	ActiveWorkers int            `json:"active_workers"`
	Started       time.Time      `json:"started"`
	Queues        map[string]int `json:"queues"`
	Servers       []ServerState  `json:"servers"`
}

// ServerState is one asynq server.
type ServerState struct {
	ID            string    `json:"id"`
	Status        string    `json:"status"`
	Concurrency   int       `json:"concurrency"`
	ActiveWorkers int       `json:"active_workers"`
	Started       time.Time `json:"started"`
}

type cachesPage struct {
	src CachesSource
}

// CachesHandlers returns the handlers of /caches, /caches.json and (unless
// read-only) the replay and purge forms, keyed by path. Wrap them with the
// UI's login where the UI has one.
func CachesHandlers(src CachesSource) map[string]http.Handler {
	if src.Logger == nil {
		src.Logger = slog.New(slog.DiscardHandler)
	}
	p := &cachesPage{src: src}
	get := func(f http.HandlerFunc) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method != http.MethodGet && r.Method != http.MethodHead {
				w.Header().Set("Allow", "GET, HEAD")
				http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
				return
			}
			f(w, r)
		})
	}
	out := map[string]http.Handler{
		CachesPath:     get(p.serveHTML),
		CachesJSONPath: get(p.serveJSON),
	}
	if src.InboxKey != "" {
		// Registered read-only too, to answer 403 rather than 404.
		csrf := http.NewCrossOriginProtection()
		out[cachesReplay] = csrf.Handler(http.HandlerFunc(p.serveAction(true)))
		out[cachesPurge] = csrf.Handler(http.HandlerFunc(p.serveAction(false)))
	}
	return out
}

func (p *cachesPage) serveJSON(w http.ResponseWriter, r *http.Request) {
	st, err := p.state(r.Context())
	if err != nil {
		p.src.Logger.Warn("cachekeeper page", slog.Any("error", err))
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(st)
}

type pageData struct {
	*CachesState
	Refresh int
	Error   string
	Notice  string
}

func (p *cachesPage) serveHTML(w http.ResponseWriter, r *http.Request) {
	d := pageData{Refresh: cachesRefresh, Notice: r.URL.Query().Get("done")}
	st, err := p.state(r.Context())
	code := http.StatusOK
	if err != nil {
		p.src.Logger.Warn("cachekeeper page", slog.Any("error", err))
		d.Error, code = err.Error(), http.StatusServiceUnavailable
		st = &CachesState{Time: time.Now(), ReadOnly: p.src.ReadOnly, UIPath: p.src.UIPath}
	}
	d.CachesState = st
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'")
	w.WriteHeader(code)
	if err := cachesTmpl.Execute(w, d); err != nil {
		p.src.Logger.Warn("cachekeeper page: render", slog.Any("error", err))
	}
}

// serveAction replays (as it is) or purges the dead letter in form field
// "record", then redirects to the page.
func (p *cachesPage) serveAction(replay bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", "POST")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		if p.src.ReadOnly {
			http.Error(w, "the cachekeeper page is read-only (worker.ui off or worker.ui_read_only: true)", http.StatusForbidden)
			return
		}
		rec := r.PostFormValue("record")
		if rec == "" {
			http.Error(w, "form field record (the dead letter as stored) is missing", http.StatusBadRequest)
			return
		}
		var err error
		what := "purged"
		if replay {
			what = "replayed"
			var dl inbox.DeadLetter
			if jerr := json.Unmarshal([]byte(rec), &dl); jerr != nil {
				http.Error(w, "this dead letter holds no entry to replay; purge it instead", http.StatusBadRequest)
				return
			}
			entry, rerr := dl.Replayable()
			if rerr != nil {
				http.Error(w, rerr.Error(), http.StatusBadRequest)
				return
			}
			err = inbox.ReplayDead(r.Context(), p.src.Redis, p.src.InboxKey, rec, entry)
		} else {
			err = inbox.PurgeDead(r.Context(), p.src.Redis, p.src.InboxKey, rec)
		}
		switch {
		case errors.Is(err, inbox.ErrDeadLetterGone):
			http.Error(w, "this dead letter is no longer in the list (replayed, purged or trimmed meanwhile)", http.StatusConflict)
			return
		case err != nil:
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		p.src.Logger.Info("dead letter "+what+" from the cachekeeper page", slog.String("inbox", p.src.InboxKey))
		http.Redirect(w, r, CachesPath+"?done="+what, http.StatusSeeOther)
	}
}

// state reads everything the page shows.
func (p *cachesPage) state(ctx context.Context) (*CachesState, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	s := p.src
	st := &CachesState{Time: time.Now().UTC(), ReadOnly: s.ReadOnly, UIPath: s.UIPath, ScheduleError: s.ScheduleErr,
		Caches: []CacheState{}, Keys: []KeysCount{}, Schedule: []ScheduleState{}, Processes: []ProcessState{}}
	skipped, err := p.counters(st)
	if err != nil {
		return nil, err
	}
	if err := p.caches(ctx, st, skipped); err != nil {
		return nil, err
	}
	if err := p.warmAlls(st); err != nil {
		return nil, err
	}
	if s.InboxKey != "" {
		n, err := inbox.CountDead(ctx, s.Redis, s.InboxKey)
		if err != nil {
			return nil, err
		}
		recs, err := inbox.ListDead(ctx, s.Redis, s.InboxKey, 0, deadShown)
		if err != nil {
			return nil, err
		}
		in := &InboxState{Key: s.InboxKey, DeadLetters: n, Dead: make([]DeadLetter, 0, len(recs))}
		for _, r := range recs {
			in.Dead = append(in.Dead, deadLetterShown(r))
		}
		st.Inbox = in
	}
	if err := p.schedule(ctx, st); err != nil {
		return nil, err
	}
	if s.ChangeStreams != nil {
		st.Changes = s.ChangeStreams(ctx)
	}
	return st, p.processes(st)
}

// counters reads this process's fenced-writes-skipped (per cache) and keys
// counters from its registry.
func (p *cachesPage) counters(st *CachesState) (map[string]float64, error) {
	skipped := map[string]float64{}
	if p.src.Gatherer == nil {
		return skipped, nil
	}
	mfs, err := p.src.Gatherer.Gather()
	if err != nil {
		return nil, fmt.Errorf("read the worker's metrics: %w", err)
	}
	for _, mf := range mfs {
		switch mf.GetName() {
		case "cachekeeper_fenced_writes_skipped_total":
			for _, m := range mf.GetMetric() {
				skipped[label(m, "cache")] += m.GetCounter().GetValue()
			}
		case "cachekeeper_keys_total":
			for _, m := range mf.GetMetric() {
				st.Keys = append(st.Keys, KeysCount{Kind: label(m, "kind"), Action: label(m, "action"), Count: m.GetCounter().GetValue()})
			}
		}
	}
	slices.SortFunc(st.Keys, func(a, b KeysCount) int { return cmp.Or(cmp.Compare(a.Kind, b.Kind), cmp.Compare(a.Action, b.Action)) })
	return skipped, nil
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// caches lists the configured caches and every name WarmCache was called
// with, with their pending ids, served marker and checkpoint.
func (p *cachesPage) caches(ctx context.Context, st *CachesState, skipped map[string]float64) error {
	s := p.src
	used, err := s.Redis.SMembers(ctx, s.Keys.WarmCaches()).Result()
	if err != nil {
		return fmt.Errorf("read the cache names WarmCache used: %w", err)
	}
	names := slices.Clone(s.Caches)
	for _, u := range used {
		if !slices.Contains(names, u) {
			names = append(names, u)
		}
	}
	slices.Sort(names)
	for _, name := range names {
		c := CacheState{Name: name, Configured: slices.Contains(s.Caches, name), FencedWritesSkipped: skipped[name]}
		if c.PendingIDs, err = s.Redis.ZCard(ctx, s.Keys.WarmPending(name)).Result(); err != nil {
			return fmt.Errorf("pending warms of %s: %w", name, err)
		}
		n, err := s.Redis.Exists(ctx, s.Keys.WarmServed(name)).Result()
		if err != nil {
			return fmt.Errorf("workers of %s: %w", name, err)
		}
		c.Served = n > 0
		raw, err := s.Redis.Get(ctx, s.Keys.WarmAllCheckpoint(name)).Result()
		switch {
		case errors.Is(err, redis.Nil):
		case err != nil:
			return fmt.Errorf("warm_all checkpoint of %s: %w", name, err)
		default:
			var cp CheckpointRec
			if err := json.Unmarshal([]byte(raw), &cp); err == nil {
				c.Checkpoint = &cp
			}
		}
		st.Caches = append(st.Caches, c)
	}
	return nil
}

// warmAlls finds each cache's running warm_all (active), else the one its
// checkpoint names, else the most recent completed or archived one kept by
// asynq.
func (p *cachesPage) warmAlls(st *CachesState) error {
	insp := p.src.Inspector
	queues, err := insp.Queues()
	if err != nil {
		return fmt.Errorf("list the queues: %w", err)
	}
	idx := map[string]int{}
	for i, c := range st.Caches {
		idx[c.Name] = i
	}
	consider := func(ti *asynq.TaskInfo, prefer bool) {
		if ti.Type != tasks.KindWarmAll {
			return
		}
		var args tasks.WarmAllArgs
		if json.Unmarshal(ti.Payload, &args) != nil {
			return
		}
		i, ok := idx[args.Cache]
		if !ok {
			return
		}
		c := &st.Caches[i]
		w := warmAllState(ti)
		if c.WarmAll == nil || prefer || (c.WarmAll.State != "active" && w.When.After(c.WarmAll.When)) {
			c.WarmAll = w
		}
	}
	for _, q := range queues {
		for _, list := range []func(string, ...asynq.ListOption) ([]*asynq.TaskInfo, error){insp.ListCompletedTasks, insp.ListArchivedTasks} {
			tis, err := list(q, asynq.PageSize(50))
			if err != nil {
				return fmt.Errorf("list the tasks of queue %s: %w", q, err)
			}
			for _, ti := range tis {
				consider(ti, false)
			}
		}
	}
	for i := range st.Caches {
		cp := st.Caches[i].Checkpoint
		if cp == nil || cp.TaskID == "" {
			continue
		}
		for _, q := range queues {
			if ti, err := insp.GetTaskInfo(q, cp.TaskID); err == nil {
				consider(ti, true)
				break
			}
		}
	}
	for _, q := range queues {
		tis, err := insp.ListActiveTasks(q, asynq.PageSize(100))
		if err != nil {
			return fmt.Errorf("list the active tasks of queue %s: %w", q, err)
		}
		for _, ti := range tis {
			consider(ti, true)
		}
	}
	return nil
}

func warmAllState(ti *asynq.TaskInfo) *WarmAllState {
	w := &WarmAllState{TaskID: ti.ID, Queue: ti.Queue, State: ti.State.String(), LastErr: ti.LastErr, When: ti.CompletedAt}
	if w.When.IsZero() {
		w.When = ti.LastFailedAt
	}
	if len(ti.Result) > 0 {
		var pr worker.WarmAllProgress
		if json.Unmarshal(ti.Result, &pr) == nil {
			w.Progress = &pr
		}
	}
	return w
}

func (p *cachesPage) schedule(ctx context.Context, st *CachesState) error {
	if len(p.src.Schedule) == 0 {
		return nil
	}
	names := make([]string, len(p.src.Schedule))
	for i, e := range p.src.Schedule {
		names[i] = e.Name
	}
	vals, err := p.src.Redis.HMGet(ctx, p.src.Keys.SchedulerLastTick(), names...).Result()
	if err != nil {
		return fmt.Errorf("read the scheduler's last ticks: %w", err)
	}
	for i, e := range p.src.Schedule {
		s := ScheduleState{Name: e.Name, Schedule: e.Schedule, Kind: e.Kind, Queue: e.QueueName, Next: e.Next(3)}
		if str, ok := vals[i].(string); ok {
			if sec, err := strconv.ParseInt(str, 10, 64); err == nil {
				s.LastTick = time.Unix(sec, 0).UTC()
			}
		}
		st.Schedule = append(st.Schedule, s)
	}
	return nil
}

// processes groups asynq's servers by worker process: a worker runs
// worker.servers asynq servers (default 4) plus its fast lane, all with one
// host and pid.
func (p *cachesPage) processes(st *CachesState) error {
	servers, err := p.src.Inspector.Servers()
	if err != nil {
		return fmt.Errorf("list the asynq servers: %w", err)
	}
	type hp struct {
		host string
		pid  int
	}
	byProc := map[hp]int{}
	for _, s := range servers {
		k := hp{s.Host, s.PID}
		i, ok := byProc[k]
		if !ok {
			i = len(st.Processes)
			byProc[k] = i
			st.Processes = append(st.Processes, ProcessState{Host: s.Host, PID: s.PID, Started: s.Started, Queues: map[string]int{}})
		}
		pr := &st.Processes[i]
		pr.Concurrency += s.Concurrency
		pr.ActiveWorkers += len(s.ActiveWorkers)
		if s.Started.Before(pr.Started) {
			pr.Started = s.Started
		}
		for q, prio := range s.Queues {
			pr.Queues[q] = max(pr.Queues[q], prio)
		}
		pr.Servers = append(pr.Servers, ServerState{ID: s.ID, Status: s.Status, Concurrency: s.Concurrency, ActiveWorkers: len(s.ActiveWorkers), Started: s.Started})
	}
	for i := range st.Processes {
		slices.SortFunc(st.Processes[i].Servers, func(a, b ServerState) int { return cmp.Compare(a.ID, b.ID) })
	}
	slices.SortFunc(st.Processes, func(a, b ProcessState) int { return cmp.Or(cmp.Compare(a.Host, b.Host), cmp.Compare(a.PID, b.PID)) })
	return nil
}
