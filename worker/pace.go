package worker

import (
	"encoding/json"

	"github.com/cachekeeper/cachekeeper/config"
	"github.com/cachekeeper/cachekeeper/internal/pace"
	"github.com/redis/go-redis/v9"
)

// paced starts a pacer for one maintenance job (see package pace and the
// `pace:` configuration block); the job passes it to the scans, batches
// and writes it runs. With pacing disabled it returns a nil pacer (whose
// methods do nothing). Stop the pacer when the job ends.
func paced(rdb redis.UniversalClient, c config.PaceConfig) *pace.Pacer {
	if c.Disabled {
		return nil
	}
	p, err := pace.New(rdb, pace.FromConfig(c))
	if err != nil { // the configuration was validated at start: cannot happen
		return nil
	}
	return p
}

// withPace returns v's JSON object with the pacer's figures added as "pace"
// (batch, keys_per_s, added_latency_ms, budget_ms, round_trip_ms,
// pause_ms, slowdowns), or v itself when the job was not paced.
func withPace(v any, p *pace.Pacer) any {
	if p == nil {
		return v
	}
	data, err := json.Marshal(v)
	if err != nil {
		return v
	}
	var m map[string]any
	if json.Unmarshal(data, &m) != nil {
		return v
	}
	m["pace"] = p.Stats()
	return m
}
