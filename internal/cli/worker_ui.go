package cli

import (
	"net/http"
	"strings"

	"github.com/cachekeeper/cachekeeper/config"
	"github.com/hibiken/asynqmon"
)

// uiPath is where the worker's HTTP server mounts asynqmon's web UI; its JSON
// API is under uiPath + "api/".
const uiPath = "/ui/"

// workerUI returns the handlers that worker.ui adds to the worker's HTTP
// server (none when it is off) and a function closing their Redis
// connections, to call once the server has stopped. The UI reads the queues
// through the same Redis connection settings as the worker.
func workerUI(cfg config.Config) (map[string]http.Handler, func() error, error) {
	if !cfg.Worker.UI {
		return nil, func() error { return nil }, nil
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
	return map[string]http.Handler{uiPath: ui}, ui.Close, nil
}
