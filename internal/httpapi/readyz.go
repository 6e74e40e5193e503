package httpapi

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"time"
)

// Readiness with a state per dependency.
//
// /readyz answers 200 when every required dependency is up and 503 when
// one is down; Kubernetes' readinessProbe reads only that status. The body
// says which dependency is in which state:
//
//	{"status":"degraded","dependencies":[{"name":"worker","state":"up","required":true},
//	 {"name":"redis","state":"up","required":true},
//	 {"name":"database","state":"down","required":false,"error":"..."}]}
//
// status is "ready" (all up), "degraded" (only optional ones down: still
// 200, the process does useful work; restarting it would not bring the
// dependency back) or "not_ready" (503). The worker marks Redis required
// and the database optional: with the database down it still runs every
// job that needs only Redis.

// Probe is one dependency checked by /readyz.
type Probe struct {
	Name string
	// Required dependencies make /readyz answer 503 when down.
	Required bool
	Check    Check
}

// DependencyReport is one dependency's entry in the /readyz body.
type DependencyReport struct {
	Name     string `json:"name"`
	State    string `json:"state"` // up or down
	Required bool   `json:"required"`
	Error    string `json:"error,omitempty"`
}

// ReadyReport is the /readyz body when the Check given to New was built by
// Probes.
type ReadyReport struct {
	Status       string             `json:"status"` // ready, degraded or not_ready
	Dependencies []DependencyReport `json:"dependencies"`
}

type reportKey struct{}

type collector struct {
	mu   sync.Mutex
	deps []DependencyReport
}

// Probes combines dependency probes into the Check given to New; it fails
// when a required one is down. Probes run one after the other, each within
// the request's 2s budget.
func Probes(probes ...Probe) Check {
	return func(ctx context.Context) error {
		col, _ := ctx.Value(reportKey{}).(*collector)
		var first error
		for _, p := range probes {
			err := p.Check(ctx)
			d := DependencyReport{Name: p.Name, State: "up", Required: p.Required}
			if err != nil {
				d.State, d.Error = "down", err.Error()
				if p.Required && first == nil {
					first = fmt.Errorf("%s: %w", p.Name, err)
				}
			}
			if col != nil {
				col.mu.Lock()
				col.deps = append(col.deps, d)
				col.mu.Unlock()
			}
		}
		return first
	}
}

// readyHandler serves /readyz: plain text for a plain Check, JSON with a
// state per dependency for one built by Probes.
func readyHandler(ready Check) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		col := &collector{}
		err := ready(context.WithValue(ctx, reportKey{}, col))
		col.mu.Lock()
		deps := col.deps
		col.mu.Unlock()
		if len(deps) == 0 {
			if err != nil {
				http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
				return
			}
			_, _ = w.Write([]byte("ready\n"))
			return
		}
		rep := ReadyReport{Status: "ready", Dependencies: deps}
		for _, d := range deps {
			if d.State != "up" {
				rep.Status = "degraded"
			}
		}
		code := http.StatusOK
		if err != nil {
			rep.Status, code = "not_ready", http.StatusServiceUnavailable
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		_ = json.NewEncoder(w).Encode(rep)
	})
}
