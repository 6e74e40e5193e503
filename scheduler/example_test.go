package scheduler_test

import (
	"fmt"
	"time"

	"github.com/cachekeeper/cachekeeper/scheduler"
)

// Entries are validated as a whole; each one knows its upcoming ticks and
// the task id each tick will be enqueued with.
func ExampleParseEntries() {
	entries, err := scheduler.ParseEntries([]scheduler.EntryConfig{
		{Name: "warm-users-nightly", Schedule: "0 3 * * *", TimeZone: "Europe/Paris",
			Kind: "cache:warm_all", Args: map[string]any{"cache": "user"}},
		{Name: "rate-limit-prune", Schedule: "@every 1m", Kind: "ratelimit:prune"},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	from := time.Date(2025, 10, 25, 12, 0, 30, 0, time.UTC)
	for _, e := range entries {
		fmt.Println(e.Name, "on", e.QueueName)
		for _, t := range e.NextAfter(from, 2) {
			fmt.Println(" ", t.Format(time.RFC3339))
		}
	}
	_, err = scheduler.ParseEntries([]scheduler.EntryConfig{{Name: "x", Schedule: "@every 90m", TimeZone: "Europe/Pariss", Kind: "session:cleanup"}})
	fmt.Println(err)
	// Output:
	// warm-users-nightly on low
	//   2025-10-26T03:00:00+01:00
	//   2025-10-27T03:00:00+01:00
	// rate-limit-prune on low
	//   2025-10-25T12:01:00Z
	//   2025-10-25T12:02:00Z
	// schedule.x.time_zone: "Europe/Pariss" is not an IANA time zone such as "Europe/Paris" or "UTC"
}
