package worker

import "github.com/cachekeeper/cachekeeper/tasks"

// registerHandlers registers every job family this build implements. Only
// kinds with a real handler are registered. A job of another kind is not
// run here: the worker passes it on (appkind.go), and it waits, without a
// retry counted, for a worker that handles it.
func (w *Worker) registerHandlers() error {
	Handle(w.mux, w.handleNotify)
	w.kinds = append(w.kinds, tasks.KindNotifyPublish)
	if err := w.registerWarm(); err != nil { // warm.go, warm_all.go
		return err
	}
	w.registerRefreshAhead()                       // refresh.go
	if err := w.registerInvalidate(); err != nil { // invalidate*.go
		return err
	}
	if err := w.registerInbox(); err != nil { // inbox.go: the bridge, unless inbox.disabled
		return err
	}
	if err := w.registerSessions(); err != nil { // session.go
		return err
	}
	if err := w.registerRateLimits(); err != nil { // ratelimit.go
		return err
	}
	return nil
}
