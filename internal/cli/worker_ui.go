package cli

import (
	"log/slog"
	"net/http"
	"strings"

	"github.com/cachekeeper/cachekeeper/config"
	"github.com/cachekeeper/cachekeeper/internal/httpapi"
	"github.com/cachekeeper/cachekeeper/internal/keys"
	"github.com/cachekeeper/cachekeeper/scheduler"
	"github.com/hibiken/asynqmon"
	"github.com/prometheus/client_golang/prometheus"
)

// uiPath is where the worker's HTTP server mounts asynqmon's web UI; its JSON
// API is under uiPath + "api/".
const uiPath = "/ui/"

// workerUI returns the handlers that worker.ui adds to the worker's HTTP
// server (none when it is off) and a function closing their Redis
// connections, to call once the server has stopped. The UI reads the queues
// through the same Redis connection settings as the worker.
//
// A UI that can change jobs, on an address beyond loopback, needs a login
// (httpapi.CheckUIExposure): without one this is a usage error (exit 2)
// saying how to fix it. /metrics, /healthz and /readyz stay open.
func workerUI(cfg config.Config, env func(string) string) (map[string]http.Handler, func() error, error) {
	if !cfg.Worker.UI {
		return nil, func() error { return nil }, nil
	}
	creds, err := uiCredentials(cfg, env)
	if err != nil {
		return nil, nil, err
	}
	opt, err := cfg.Redis.ConnOpt()
	if err != nil {
		return nil, nil, err
	}
	ui := asynqmon.New(asynqmon.Options{
		RootPath:     strings.TrimSuffix(uiPath, "/"),
		RedisConnOpt: opt,
		ReadOnly:     cfg.Worker.UIReadOnly,
	})
	var h http.Handler = ui
	if creds != nil {
		h = creds.Wrap(ui)
	}
	return map[string]http.Handler{uiPath: h}, ui.Close, nil
}

// workerCaches returns the handlers of the cachekeeper page (/caches,
// /caches.json and its dead-letter forms), served on every worker's HTTP
// server. It is read-only unless the UI is on and not read-only, and behind
// the UI's login when the UI has one.
func workerCaches(cfg config.Config, env func(string) string, svc *services, reg prometheus.Gatherer, logger *slog.Logger) (map[string]http.Handler, error) {
	creds, err := uiCredentials(cfg, env)
	if err != nil {
		return nil, err
	}
	k, err := keys.New(cfg.KeyPrefix)
	if err != nil {
		return nil, usagef("%v", err)
	}
	src := httpapi.CachesSource{
		Inspector: svc.inspector(), Redis: svc.redis, Keys: k, Caches: cfg.CacheNames(), Gatherer: reg,
		ReadOnly: !cfg.Worker.UI || cfg.Worker.UIReadOnly, Logger: logger,
	}
	if cfg.Worker.UI {
		src.UIPath = uiPath
	}
	if !cfg.Inbox.Disabled {
		src.InboxKey = cfg.Inbox.Key
	}
	if src.Schedule, err = scheduler.ParseEntries(cfg.Schedule); err != nil {
		src.ScheduleErr = err.Error()
	}
	if cfg.HasChanges() && cfg.CheckChangeStream() == nil {
		src.ChangeStreams = changeStreams(cfg, svc)
	}
	hs := httpapi.CachesHandlers(src)
	if creds != nil {
		for path, h := range hs {
			hs[path] = creds.Wrap(h)
		}
	}
	return hs, nil
}

// uiCredentials loads the UI's login and refuses an exposed UI without one.
func uiCredentials(cfg config.Config, env func(string) string) (*httpapi.Credentials, error) {
	if !cfg.Worker.UI {
		return nil, nil
	}
	creds, err := httpapi.LoadCredentials(env, cfg.Worker.UIAuthFile)
	if err != nil {
		return nil, usagef("%v", err)
	}
	if err := httpapi.CheckUIExposure(cfg.Worker.MetricsAddr, cfg.Worker.UIReadOnly, creds); err != nil {
		return nil, usagef("%v", err)
	}
	return creds, nil
}
