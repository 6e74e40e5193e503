package scheduler_test

import (
	"testing"

	"github.com/cachekeeper/cachekeeper/scheduler"
)

// FuzzParseSchedule: schedule expressions never panic; rejections are errors
// with a message.
func FuzzParseSchedule(f *testing.F) {
	for _, s := range []string{"@every 1m", "0 3 * * *", "@daily", "*/5 * * * *", "TZ=UTC 0 3 * * *", "@every -1s", "61 * * * *", ""} {
		f.Add(s, "UTC")
	}
	f.Add("0 3 * * *", "Europe/Nowhere")
	f.Fuzz(func(t *testing.T, spec, tz string) {
		if _, err := scheduler.ParseSchedule(spec, tz); err != nil && err.Error() == "" {
			t.Fatal("empty error")
		}
	})
}
