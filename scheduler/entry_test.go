package scheduler_test

import (
	"strings"
	"testing"
	"time"

	. "github.com/cachekeeper/cachekeeper/scheduler" // external test: see helpers_test.go
)

func utc(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t
}

// Cron (seconds optional), descriptors and @every, in time zones, across DST.
func TestScheduleNextTicks(t *testing.T) {
	t.Parallel()
	cases := []struct {
		spec, tz, from string
		want           []string // RFC3339, UTC
	}{
		{"*/5 * * * *", "", "2025-06-01T10:02:30Z", []string{"2025-06-01T10:05:00Z", "2025-06-01T10:10:00Z", "2025-06-01T10:15:00Z"}},
		{"30 0 3 * * *", "UTC", "2025-06-01T10:00:00Z", []string{"2025-06-02T03:00:30Z", "2025-06-03T03:00:30Z", "2025-06-04T03:00:30Z"}},
		{"*/20 * * * * *", "", "2025-06-01T10:00:00Z", []string{"2025-06-01T10:00:20Z", "2025-06-01T10:00:40Z", "2025-06-01T10:01:00Z"}},
		{"0 3 * * *", "UTC", "2025-06-01T03:00:00Z", []string{"2025-06-02T03:00:00Z", "2025-06-03T03:00:00Z", "2025-06-04T03:00:00Z"}},
		// 03:00 in Paris is 01:00Z in summer, 02:00Z in winter (DST ends 2025-10-26).
		{"0 3 * * *", "Europe/Paris", "2025-10-25T12:00:00Z", []string{"2025-10-26T02:00:00Z", "2025-10-27T02:00:00Z", "2025-10-28T02:00:00Z"}},
		{"0 3 * * *", "Europe/Paris", "2025-06-01T00:00:00Z", []string{"2025-06-01T01:00:00Z", "2025-06-02T01:00:00Z", "2025-06-03T01:00:00Z"}},
		// New York springs forward on 2025-03-09: 09:00 EST is 14:00Z, then 13:00Z.
		{"0 9 * * *", "America/New_York", "2025-03-08T00:00:00Z", []string{"2025-03-08T14:00:00Z", "2025-03-09T13:00:00Z", "2025-03-10T13:00:00Z"}},
		// Weekdays in a half-hour zone (2025-06-06 is a Friday).
		{"0 9 * * 1-5", "Asia/Kolkata", "2025-06-06T04:00:00Z", []string{"2025-06-09T03:30:00Z", "2025-06-10T03:30:00Z", "2025-06-11T03:30:00Z"}},
		{"@hourly", "", "2025-06-01T10:59:59Z", []string{"2025-06-01T11:00:00Z", "2025-06-01T12:00:00Z", "2025-06-01T13:00:00Z"}},
		{"@daily", "Asia/Tokyo", "2025-06-01T00:00:00Z", []string{"2025-06-01T15:00:00Z", "2025-06-02T15:00:00Z", "2025-06-03T15:00:00Z"}},
		{"@weekly", "", "2025-06-01T00:00:00Z", []string{"2025-06-08T00:00:00Z", "2025-06-15T00:00:00Z", "2025-06-22T00:00:00Z"}},
		{"@monthly", "", "2025-06-01T00:00:00Z", []string{"2025-07-01T00:00:00Z", "2025-08-01T00:00:00Z", "2025-09-01T00:00:00Z"}},
		// @every is aligned to the Unix epoch, whatever the zone and start.
		{"@every 30s", "", "2025-06-01T10:00:10Z", []string{"2025-06-01T10:00:30Z", "2025-06-01T10:01:00Z", "2025-06-01T10:01:30Z"}},
		{"@every 30s", "Europe/Paris", "2025-06-01T10:00:30Z", []string{"2025-06-01T10:01:00Z", "2025-06-01T10:01:30Z", "2025-06-01T10:02:00Z"}},
		{"@every 1h30m", "", "2024-01-01T00:00:00Z", []string{"2024-01-01T01:30:00Z", "2024-01-01T03:00:00Z", "2024-01-01T04:30:00Z"}},
		{"@every 1s", "", "2025-06-01T10:00:00.5Z", []string{"2025-06-01T10:00:01Z", "2025-06-01T10:00:02Z", "2025-06-01T10:00:03Z"}},
		{"  @every 5m  ", "", "2025-06-01T10:02:00Z", []string{"2025-06-01T10:05:00Z", "2025-06-01T10:10:00Z", "2025-06-01T10:15:00Z"}},
	}
	for _, c := range cases {
		t.Run(c.spec+" "+c.tz, func(t *testing.T) {
			e := entryFor(t, c.spec, c.tz)
			got := e.NextAfter(utc(c.from), len(c.want))
			if len(got) != len(c.want) {
				t.Fatalf("got %d ticks %v, want %v", len(got), got, c.want)
			}
			for i, w := range c.want {
				if !got[i].Equal(utc(w)) {
					t.Fatalf("tick %d = %s, want %s (all: %v)", i, got[i].UTC().Format(time.RFC3339), w, got)
				}
				if c.tz != "" && got[i].Location().String() != c.tz {
					t.Fatalf("tick %d is in %s, want the entry's zone %s", i, got[i].Location(), c.tz)
				}
			}
		})
	}
}

func entryFor(t *testing.T, spec, tz string) Entry {
	t.Helper()
	ce := notifyEntry("e", spec)
	ce.TimeZone = tz
	es, err := ParseEntries([]EntryConfig{ce})
	if err != nil {
		t.Fatalf("ParseEntries(%q, %q): %v", spec, tz, err)
	}
	return es[0]
}

func TestScheduleParseErrors(t *testing.T) {
	t.Parallel()
	cases := []struct{ spec, tz, want string }{
		{"", "", "schedule.e.schedule: is empty"},
		{"* * * *", "", "schedule.e.schedule: \"* * * *\" is not a valid schedule"},
		{"61 * * * *", "", "is not a valid schedule"},
		{"* * * * * * *", "", "is not a valid schedule"},
		{"@fortnightly", "", "is not a valid schedule"},
		{"@every", "", "needs a duration"},
		{"@every banana", "", "is not a duration"},
		{"@every 500ms", "", "whole number of seconds, at least 1s"},
		{"@every 1.5s", "", "whole number of seconds"},
		{"@every -5s", "", "at least 1s"},
		{"@every 10000h", "", "at most 8784h"},
		{"0 0 30 2 *", "", "never fires"},
		{"CRON_TZ=UTC 0 3 * * *", "", "set the zone with time_zone"},
		{"TZ=Europe/Paris 0 3 * * *", "", "set the zone with time_zone"},
		{"0 3 * * *", "Mars/Olympus_Mons", "schedule.e.time_zone: \"Mars/Olympus_Mons\" is not an IANA time zone"},
		{"0 3 * * *", "Local", "schedule.e.time_zone: \"Local\" depends on the machine"},
		{"0 3 * * *", "europe/paris", "is not an IANA time zone"},
	}
	for _, c := range cases {
		t.Run(c.spec+" "+c.tz, func(t *testing.T) {
			ce := notifyEntry("e", c.spec)
			ce.TimeZone = c.tz
			_, err := ParseEntries([]EntryConfig{ce})
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error = %v, want one containing %q", err, c.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("error spans several lines: %q", err)
			}
		})
	}
}

func TestEntryValidation(t *testing.T) {
	t.Parallel()
	base := func() EntryConfig {
		return EntryConfig{Name: "job", Schedule: "@every 1m", Kind: "session:cleanup"}
	}
	cases := []struct {
		name   string
		change func(*EntryConfig)
		want   string // "" means valid
	}{
		{"minimal", func(*EntryConfig) {}, ""},
		{"all options", func(e *EntryConfig) {
			e.Args = map[string]any{"max_age": "24h", "idle_timeout": 3600, "max_keys_per_second": 500}
			e.Queue, e.Timeout, e.CatchUp, e.TimeZone = "default", 10*time.Minute, "one", "Europe/Paris"
		}, ""},
		{"catch_up none", func(e *EntryConfig) { e.CatchUp = "none" }, ""},
		{"nested args", func(e *EntryConfig) {
			e.Kind, e.Args = "cache:invalidate", map[string]any{"keys": []any{"user:1", "user:2"}}
		}, ""},
		{"empty name", func(e *EntryConfig) { e.Name = "" }, "schedule[0].name must not be empty"},
		{"name with space", func(e *EntryConfig) { e.Name = "my job" }, `schedule: name "my job" must be 1 to 100 letters`},
		{"name with colon", func(e *EntryConfig) { e.Name = "a:b" }, "letters, digits"},
		{"no kind", func(e *EntryConfig) { e.Kind = "" }, "schedule.job.kind is required"},
		{"unknown kind", func(e *EntryConfig) { e.Kind = "session:clean" }, `schedule.job.kind: kind "session:clean" is not known (known: cache:invalidate`},
		{"unknown arg", func(e *EntryConfig) { e.Args = map[string]any{"max_agee": "1h"} }, `schedule.job.args: session:cleanup: field "max_agee"`},
		{"wrong arg type", func(e *EntryConfig) { e.Args = map[string]any{"max_keys_per_second": "fast"} }, `schedule.job.args: session:cleanup: field "max_keys_per_second"`},
		{"invalid arg value", func(e *EntryConfig) {
			e.Kind, e.Args = "cache:warm_all", map[string]any{"cache": ""}
		}, `schedule.job.args: cache:warm_all: field "cache"`},
		{"missing required arg", func(e *EntryConfig) { e.Kind = "notify:publish" }, `schedule.job.args: notify:publish: field "channel"`},
		{"bad duration arg", func(e *EntryConfig) { e.Args = map[string]any{"max_age": "a day"} }, `schedule.job.args: session:cleanup`},
		{"queue with space", func(e *EntryConfig) { e.Queue = "my queue" }, `schedule.job.queue "my queue" must be a plain queue name`},
		{"negative timeout", func(e *EntryConfig) { e.Timeout = -time.Second }, "schedule.job.timeout must be a positive duration"},
		{"sub-second timeout", func(e *EntryConfig) { e.Timeout = 500 * time.Millisecond }, "schedule.job.timeout must be at least 1s"},
		{"bad catch_up", func(e *EntryConfig) { e.CatchUp = "all" }, `schedule.job.catch_up "all" must be "none"`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := base()
			c.change(&e)
			_, err := ParseEntries([]EntryConfig{e})
			switch {
			case c.want == "" && err != nil:
				t.Fatalf("valid entry refused: %v", err)
			case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
				t.Fatalf("error = %v, want one containing %q", err, c.want)
			}
		})
	}
	dup := []EntryConfig{base(), base()}
	if _, err := ParseEntries(dup); err == nil || !strings.Contains(err.Error(), `name "job" is used twice`) {
		t.Fatalf("duplicate names: %v", err)
	}
}

// Task ids: stable across replicas, a new series when kind, arguments or
// queue change, not when only the schedule or timeout changes.
func TestSeriesAndTaskIDs(t *testing.T) {
	t.Parallel()
	base := EntryConfig{Name: "warm", Schedule: "0 3 * * *", Kind: "cache:warm_all", Args: map[string]any{"cache": "user"}}
	series := func(change func(*EntryConfig)) string {
		e := base
		e.Args = map[string]any{"cache": "user"}
		change(&e)
		es, err := ParseEntries([]EntryConfig{e})
		if err != nil {
			t.Fatal(err)
		}
		return es[0].Series
	}
	s0 := series(func(*EntryConfig) {})
	if !strings.HasPrefix(s0, "schedule:warm:") || len(s0) != len("schedule:warm:")+8 {
		t.Fatalf("series %q, want schedule:warm:<8 hex>", s0)
	}
	same := map[string]func(*EntryConfig){
		"again":               func(*EntryConfig) {},
		"schedule":            func(e *EntryConfig) { e.Schedule = "@daily" },
		"timeout":             func(e *EntryConfig) { e.Timeout = time.Hour },
		"explicit default q":  func(e *EntryConfig) { e.Queue = "low" },
		"zero-valued arg set": func(e *EntryConfig) { e.Args["restart"] = false },
	}
	for name, f := range same {
		if got := series(f); got != s0 {
			t.Errorf("%s: series %s, want unchanged %s", name, got, s0)
		}
	}
	differ := map[string]func(*EntryConfig){
		"args":  func(e *EntryConfig) { e.Args["restart"] = true },
		"queue": func(e *EntryConfig) { e.Queue = "default" },
		"name":  func(e *EntryConfig) { e.Name = "warm2" },
	}
	for name, f := range differ {
		if got := series(f); got == s0 {
			t.Errorf("%s: series unchanged %s, want a new series", name, got)
		}
	}
	es, _ := ParseEntries([]EntryConfig{base})
	if id := es[0].TaskID(utc("2025-06-01T03:00:00Z")); id != s0+":1748746800" {
		t.Fatalf("TaskID = %q, want %s:1748746800", id, s0)
	}
}

func TestRetention(t *testing.T) {
	t.Parallel()
	cases := []struct {
		spec string
		want time.Duration
	}{
		{"@every 1s", MinRetention},
		{"@every 30m", time.Hour},
		{"@every 2h", 4 * time.Hour},
		{"0 9,17 * * *", 24 * time.Hour}, // gaps 8h and 16h: 32h, capped
		{"@daily", MaxRetention},
		{"@weekly", MaxRetention},
	}
	for _, c := range cases {
		if got := entryFor(t, c.spec, "").Retention; got != c.want {
			t.Errorf("%s: retention %s, want %s", c.spec, got, c.want)
		}
	}
}

// lastTick finds the latest tick in (after, now] without walking every
// missed tick.
func TestLastTick(t *testing.T) {
	t.Parallel()
	every := func(d time.Duration) Schedule { return EverySchedule{Interval: d} }
	daily, err := ParseSchedule("0 3 * * *", "Europe/Paris")
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name       string
		sched      Schedule
		after, now time.Time
		want       time.Time
	}{
		{"on a tick", every(10 * time.Second), t0, t0.Add(30 * time.Second), t0.Add(30 * time.Second)},
		{"between ticks", every(10 * time.Second), t0, t0.Add(35 * time.Second), t0.Add(30 * time.Second)},
		{"none in range", every(10 * time.Second), t0, t0.Add(9 * time.Second), time.Time{}},
		{"after excluded", every(10 * time.Second), t0.Add(-time.Second), t0.Add(5 * time.Second), t0},
		{"a year of seconds", every(time.Second), t0.AddDate(-1, 0, 0), t0.Add(500 * time.Millisecond), t0},
		{"no lower bound", every(time.Hour), time.Time{}, t0.Add(90 * time.Minute), t0.Add(time.Hour)},
		{"daily in Paris", daily, t0.AddDate(0, -2, 0), t0, time.Date(2025, 6, 1, 1, 0, 0, 0, time.UTC)},
		{"now before after", every(time.Second), t0, t0.Add(-time.Hour), time.Time{}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := LastTickForTest(c.sched, c.after, c.now)
			if !got.Equal(c.want) {
				t.Fatalf("lastTick = %v, want %v", got, c.want)
			}
		})
	}
}
