// Package bench holds the scenarios of `cachekeeper bench`. Every scenario
// measures cachekeeper and a baseline in the same run, on the same Redis, so
// that ratios mean something on a noisy machine.
package bench

import "math"

// Result is one scenario's figures, printed as a table row or one JSON object.
type Result struct {
	Scenario        string  `json:"scenario"`
	CachekeeperPerS float64 `json:"cachekeeper_per_s"`
	BaselinePerS    float64 `json:"baseline_per_s"`
	// Ratio is CachekeeperPerS / BaselinePerS.
	Ratio float64 `json:"ratio"`
	// CeilingPerS is the best the hardware does for the same work, when measured.
	CeilingPerS float64 `json:"ceiling_per_s,omitempty"`
	// Baseline names what the baseline is.
	Baseline string `json:"baseline"`
	// Extra holds scenario-specific figures (latency percentiles, counts...).
	Extra map[string]any `json:"extra,omitempty"`
}

// NewResult fills Ratio from the two rates.
func NewResult(scenario, baseline string, ours, base float64) Result {
	r := Result{Scenario: scenario, Baseline: baseline, CachekeeperPerS: round(ours), BaselinePerS: round(base)}
	if base > 0 {
		r.Ratio = math.Round(ours/base*100) / 100
	}
	return r
}

func round(v float64) float64 { return math.Round(v*10) / 10 }
