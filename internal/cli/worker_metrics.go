package cli

import (
	"sort"

	"github.com/cachekeeper/cachekeeper/config"
	"github.com/cachekeeper/cachekeeper/internal/httpapi"
	"github.com/cachekeeper/cachekeeper/internal/keys"
	"github.com/prometheus/client_golang/prometheus"
)

// registerQueueMetrics adds the queue, coalescing and inbox gauges and the
// build info to the worker's registry.
func registerQueueMetrics(reg prometheus.Registerer, cfg config.Config, svc *services) error {
	k, err := keys.New(cfg.KeyPrefix)
	if err != nil {
		return usagef("%v", err)
	}
	caches := cfg.CacheNames()
	queues := make([]string, 0, len(cfg.Worker.Queues))
	for q := range cfg.Worker.Queues {
		queues = append(queues, q)
	}
	sort.Strings(queues)
	src := httpapi.QueueSource{Inspector: svc.inspector(), Redis: svc.redis, Keys: k, Caches: caches, Queues: queues}
	if !cfg.Inbox.Disabled {
		src.InboxKey = cfg.Inbox.Key
	}
	for _, c := range []prometheus.Collector{httpapi.NewQueueCollector(src), httpapi.NewBuildInfo(Version)} {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}
