package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/cachekeeper/cachekeeper/config"
	"github.com/cachekeeper/cachekeeper/internal/sqldb"
)

// Degraded start: the database is one dependency among several. When it is
// down at start-up (or goes down later) the worker still runs every job that
// needs only Redis (invalidation, session revocation and cleanup, rate-limit
// pruning, notifications), fails each job that reads the database with
// ErrDatabaseDown (a plain error, so asynq retries it with its backoff and
// archives it when its retries run out: `cachekeeper task run ID` brings it
// back), and keeps trying the database in the background, logging once per
// change of state.

// ErrDatabaseDown is the error of a job that needs the database while the
// worker cannot reach it.
var ErrDatabaseDown = errors.New("this job reads the database, which the worker cannot reach now (asynq retries it while it has retries left)")

const (
	// dbPingTimeout bounds one probe of the database.
	dbPingTimeout = 3 * time.Second
	// dbProbeInterval is how often the database is probed.
	dbProbeInterval = 2 * time.Second
)

// DependencyState is the state of one dependency, for /readyz.
type DependencyState struct {
	// Up is true when the last probe succeeded.
	Up bool
	// Err is the last probe's error when it failed.
	Err error
	// Since is when the state last changed.
	Since time.Time
}

// dbMonitor probes the database and validates the cache specs once it
// answers for the first time.
type dbMonitor struct {
	w        *Worker
	mu       sync.Mutex
	state    DependencyState
	validate func(ctx context.Context) error // nil once done
}

func (m *dbMonitor) get() DependencyState {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.state
}

// set records a probe's outcome and logs a change of state.
func (m *dbMonitor) set(err error) {
	m.mu.Lock()
	changed := m.state.Up != (err == nil) || m.state.Since.IsZero()
	m.state.Up, m.state.Err = err == nil, err
	if changed {
		m.state.Since = time.Now()
	}
	m.mu.Unlock()
	if !changed {
		return
	}
	if err != nil {
		m.w.logger.Warn("database unreachable: jobs that read it fail and retry, every other job runs; retrying in the background",
			slog.String("error", err.Error()))
		return
	}
	m.w.logger.Info("database reachable")
}

// probe pings the database and, the first time it answers, validates the
// cache specs against it (an invalid spec is a configuration error: it
// stops the worker, as it would have at start-up).
func (m *dbMonitor) probe(ctx context.Context) error {
	pctx, cancel := context.WithTimeout(ctx, dbPingTimeout)
	err := sqldb.Ping(pctx, m.w.deps.DB)
	cancel()
	if ctx.Err() != nil {
		return nil
	}
	if err != nil && m.validate != nil && sqldb.IsRefused(err) {
		// The database answers and refuses the configured user, password or
		// database: a configuration error, as an invalid cache spec is,
		// which no amount of retrying in the background fixes.
		return fmt.Errorf("%w: %v: fix database.url (or %s, --database-url)", config.ErrInvalid, err, config.EnvDatabaseURL)
	}
	if err == nil && m.validate != nil {
		if verr := m.validate(ctx); verr != nil {
			if ctx.Err() != nil {
				return nil
			}
			pctx, cancel := context.WithTimeout(ctx, dbPingTimeout)
			perr := sqldb.Ping(pctx, m.w.deps.DB)
			cancel()
			if perr == nil {
				return verr // the database answers: the spec is wrong
			}
			err = perr
		} else {
			m.validate = nil
		}
	}
	m.set(err)
	return nil
}

// run probes the database until ctx ends.
func (m *dbMonitor) run(ctx context.Context) error {
	t := time.NewTicker(dbProbeInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		if err := m.probe(ctx); err != nil {
			return err
		}
	}
}

// needDB returns ErrDatabaseDown, with the last probe's error, when the
// database is known to be down; jobs that read it call it first.
func (w *Worker) needDB() error {
	if w.db == nil {
		return nil
	}
	if s := w.db.get(); !s.Up {
		return fmt.Errorf("%w: %v", ErrDatabaseDown, s.Err)
	}
	return nil
}

// Database reports the database's state as the worker last saw it; Up is
// true and Since zero when the worker has no database.
func (w *Worker) Database() DependencyState {
	if w.db == nil {
		return DependencyState{Up: true}
	}
	return w.db.get()
}

// startDB probes the database once at start-up: when it answers, the specs
// are validated now and an invalid one fails New; when it does not, the
// worker starts degraded. Either way the monitor keeps probing.
func (w *Worker) startDB(validate func(ctx context.Context) error) error {
	m := &dbMonitor{w: w, validate: validate}
	w.db = m
	ctx, cancel := context.WithTimeout(context.Background(), specValidationTimeout)
	defer cancel()
	if err := m.probe(ctx); err != nil {
		return err
	}
	w.addRunner("database monitor", m.run)
	return nil
}
