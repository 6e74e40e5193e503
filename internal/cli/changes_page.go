package cli

import (
	"context"
	"time"

	"github.com/cachekeeper/cachekeeper/changes"
	"github.com/cachekeeper/cachekeeper/config"
	"github.com/cachekeeper/cachekeeper/internal/httpapi"
)

// defaultStream is `cachekeeper changes --stream`'s default.
const defaultStream = "cachekeeper"

// changeStreams reads, for the /caches page, the status of every stream
// that has held its lease on this Redis (whatever its --stream), or of the
// default stream when none has run yet, as `cachekeeper changes status`
// reads it: the holder and its report from Redis, the slot or binlog
// position from the database.
func changeStreams(cfg config.Config, svc *services) func(ctx context.Context) []httpapi.ChangeStream {
	return func(ctx context.Context) []httpapi.ChangeStream {
		names, err := changes.Streams(ctx, svc.redis, cfg.KeyPrefix)
		if err != nil {
			return []httpapi.ChangeStream{{Status: changes.Status{Stream: defaultStream}, Error: err.Error()}}
		}
		if len(names) == 0 {
			names = []string{defaultStream}
		}
		out := make([]httpapi.ChangeStream, 0, len(names))
		for _, name := range names {
			out = append(out, changeStream(ctx, cfg, svc, name))
		}
		return out
	}
}

func changeStream(ctx context.Context, cfg config.Config, svc *services, name string) httpapi.ChangeStream {
	kind, _ := cfg.Database.DriverName()
	cs := httpapi.ChangeStream{Status: changes.Status{Stream: name, Database: kind}}
	s, err := changes.New(changes.Config{Caches: cfg.Caches, Database: cfg.Database, Redis: svc.redis,
		KeyPrefix: cfg.KeyPrefix, Name: name}, nil)
	if err != nil {
		cs.Error = err.Error()
		return cs
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	st, err := s.Status(ctx)
	cs.Status = st
	if err != nil {
		cs.Error = "read the stream's status: " + err.Error()
	}
	return cs
}
