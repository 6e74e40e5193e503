package worker

import (
	"github.com/cachekeeper/cachekeeper/tasks"
)

// keyActions are the (kind, action) series of cachekeeper_keys_total the
// handlers add to.
var keyActions = [][2]string{
	{tasks.KindWarm, "written"}, {tasks.KindWarm, "deleted"},
	{tasks.KindWarmAll, "written"}, {tasks.KindWarmAll, "deleted"},
	{tasks.KindInvalidate, "deleted"}, {tasks.KindInvalidatePattern, "deleted"},
	{tasks.KindInvalidateTag, "deleted"}, {"tag_prune", "pruned"},
}

// initSeries creates every counter series whose label values are known at
// start at zero, so that rate() and alerts see them before the first
// increment: each kind by outcome, fenced writes skipped per configured
// cache, keys by kind and action.
func (w *Worker) initSeries() {
	for _, k := range tasks.Kinds() {
		w.metrics.forKind(k.Kind)
	}
	for name, cs := range w.cfg.Caches {
		w.metrics.Skipped.WithLabelValues(name)
		if cs.RefreshAhead.Enabled {
			w.metrics.RefreshAhead.WithLabelValues(name, "refreshed")
			w.metrics.RefreshAhead.WithLabelValues(name, "skipped")
		}
	}
	for _, ka := range keyActions {
		w.metrics.Keys.WithLabelValues(ka[0], ka[1])
	}
}
