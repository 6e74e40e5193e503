package scheduler

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"regexp"
	"strings"
	"time"
	_ "time/tzdata" // time zones work on machines without a zoneinfo database

	"github.com/cachekeeper/cachekeeper/tasks"
	"github.com/robfig/cron/v3"
)

// EntryConfig is one periodic job as configured: an element of the
// configuration file's schedule section (config.Config.Schedule).
type EntryConfig struct {
	// Name identifies the entry; it is part of every task id the entry makes,
	// so it may hold only letters, digits, '_', '-' and '.'.
	Name string `yaml:"name"`
	// Schedule is a cron expression with seconds optional ("*/5 * * * *",
	// "30 0 3 * * *"), a descriptor (@hourly, @daily, @weekly, @monthly,
	// @yearly, @midnight) or @every with a Go duration ("@every 30s").
	Schedule string `yaml:"schedule"`
	// TimeZone is an IANA name such as Europe/Paris (default UTC). It applies
	// to cron expressions and descriptors; @every ticks are aligned to the
	// Unix epoch whatever the zone.
	TimeZone string         `yaml:"time_zone,omitempty"`
	Kind     string         `yaml:"kind"`
	Args     map[string]any `yaml:"args,omitempty"`
	// Queue overrides the kind's default queue.
	Queue string `yaml:"queue,omitempty"`
	// Timeout overrides the kind's default timeout of one run.
	Timeout time.Duration `yaml:"timeout,omitempty"`
	// CatchUp is "none" (default) or "one": run a single missed tick on start.
	CatchUp string `yaml:"catch_up,omitempty"`
}

// CatchUp values.
const (
	CatchUpNone = "none"
	CatchUpOne  = "one"
)

// Schedule computes the tick times of an entry.
type Schedule interface {
	// Next returns the first tick strictly after t, or the zero time when
	// there is none within five years.
	Next(t time.Time) time.Time
}

var scheduleNameRE = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,100}$`)

var cronParser = cron.NewParser(cron.SecondOptional | cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// ParseSchedule parses spec (cron with seconds optional, a descriptor or
// "@every <duration>") in the IANA time zone tz ("" means UTC).
func ParseSchedule(spec, tz string) (Schedule, error) {
	loc, err := LoadLocation(tz)
	if err != nil {
		return nil, err
	}
	spec = strings.TrimSpace(spec)
	switch {
	case spec == "":
		return nil, errors.New(`is empty; use a cron expression such as "*/5 * * * *", a descriptor such as "@hourly", or "@every 30s"`)
	case strings.HasPrefix(spec, "TZ=") || strings.HasPrefix(spec, "CRON_TZ="):
		return nil, fmt.Errorf("%q: set the zone with time_zone, not a TZ= prefix", spec)
	case strings.HasPrefix(spec, "@every"):
		return parseEvery(spec)
	}
	s, err := cronParser.Parse(spec)
	if err != nil {
		return nil, fmt.Errorf("%q is not a valid schedule: %v (use 5 cron fields, 6 with seconds first, @hourly or @every 30s)", spec, err)
	}
	cs, ok := s.(*cron.SpecSchedule)
	if !ok {
		return nil, fmt.Errorf("%q: unsupported schedule type %T", spec, s)
	}
	cs.Location = loc
	if cs.Next(time.Now()).IsZero() {
		return nil, fmt.Errorf("%q never fires (no matching date within five years)", spec)
	}
	return cs, nil
}

// LoadLocation loads an IANA time zone; "" means UTC. "Local" is refused:
// replicas on machines with different local zones would disagree on ticks.
func LoadLocation(tz string) (*time.Location, error) {
	switch tz {
	case "", "UTC":
		return time.UTC, nil
	case "Local":
		return nil, errors.New(`"Local" depends on the machine; give an IANA zone such as "Europe/Paris" or "UTC"`)
	}
	loc, err := time.LoadLocation(tz)
	if err != nil {
		return nil, fmt.Errorf("%q is not an IANA time zone such as \"Europe/Paris\" or \"UTC\"", tz)
	}
	return loc, nil
}

// EverySchedule ticks at every multiple of Interval since the Unix epoch, so
// that replicas started at different moments agree on the tick times.
type EverySchedule struct {
	Interval time.Duration
}

// Next implements Schedule.
func (e EverySchedule) Next(t time.Time) time.Time {
	d := e.Interval.Nanoseconds()
	n := t.UnixNano()
	q := n / d
	if n < 0 && n%d != 0 {
		q-- // floor for times before 1970
	}
	return time.Unix(0, (q+1)*d).In(t.Location())
}

func parseEvery(spec string) (Schedule, error) {
	arg := strings.TrimSpace(strings.TrimPrefix(spec, "@every"))
	if arg == "" {
		return nil, fmt.Errorf("%q needs a duration, for example \"@every 30s\"", spec)
	}
	d, err := time.ParseDuration(arg)
	if err != nil {
		return nil, fmt.Errorf("%q: %q is not a duration such as 30s, 5m or 1h30m", spec, arg)
	}
	if d < time.Second || d%time.Second != 0 {
		return nil, fmt.Errorf("%q: the interval must be a whole number of seconds, at least 1s", spec)
	}
	if d > 366*24*time.Hour {
		return nil, fmt.Errorf("%q: the interval must be at most 8784h (one year); use a cron expression for rarer jobs", spec)
	}
	return EverySchedule{Interval: d}, nil
}

// Payload decodes Args as the payload of Kind and validates it.
func (e EntryConfig) Payload() (tasks.Payload, error) {
	if _, ok := tasks.Lookup(e.Kind); !ok {
		names := make([]string, 0)
		for _, k := range tasks.Kinds() {
			names = append(names, k.Kind)
		}
		return nil, fmt.Errorf("kind %q is not known (known: %s)", e.Kind, strings.Join(names, ", "))
	}
	args := e.Args
	if args == nil {
		args = map[string]any{}
	}
	data, err := json.Marshal(args)
	if err != nil {
		return nil, fmt.Errorf("args cannot be encoded as JSON: %v", err)
	}
	return tasks.Decode(e.Kind, data)
}

// Validate checks one entry on its own and returns the first problem, naming
// the field ("schedule.nightly.time_zone: ...").
func (e EntryConfig) Validate() error {
	if !scheduleNameRE.MatchString(e.Name) {
		return fmt.Errorf("schedule: name %q must be 1 to 100 letters, digits, '_', '-' or '.'", e.Name)
	}
	field := func(f string) string { return "schedule." + e.Name + "." + f }
	if e.Kind == "" {
		return fmt.Errorf("%s is required, for example \"session:cleanup\"", field("kind"))
	}
	if _, err := LoadLocation(e.TimeZone); err != nil {
		return fmt.Errorf("%s: %v", field("time_zone"), err)
	}
	if _, err := ParseSchedule(e.Schedule, e.TimeZone); err != nil {
		return fmt.Errorf("%s: %v", field("schedule"), err)
	}
	if _, err := e.Payload(); err != nil {
		if _, ok := tasks.Lookup(e.Kind); !ok {
			return fmt.Errorf("%s: %v", field("kind"), err)
		}
		return fmt.Errorf("%s: %v", field("args"), err)
	}
	if e.Queue != "" && (strings.TrimSpace(e.Queue) != e.Queue || strings.ContainsAny(e.Queue, "{}: \t\n")) {
		return fmt.Errorf("%s %q must be a plain queue name such as \"low\" (no spaces, braces or colons)", field("queue"), e.Queue)
	}
	if e.Timeout < 0 {
		return fmt.Errorf("%s must be a positive duration such as 10m, or omitted for the kind's default; got %s", field("timeout"), e.Timeout)
	}
	if e.Timeout > 0 && e.Timeout < time.Second {
		return fmt.Errorf("%s must be at least 1s (asynq counts timeouts in seconds); got %s", field("timeout"), e.Timeout)
	}
	if e.Timeout > math.MaxInt32*time.Second {
		return fmt.Errorf("%s %s is too long", field("timeout"), e.Timeout)
	}
	switch e.CatchUp {
	case "", CatchUpNone, CatchUpOne:
	default:
		return fmt.Errorf("%s %q must be \"none\" (skip missed ticks) or \"one\" (run the latest missed tick on start)", field("catch_up"), e.CatchUp)
	}
	return nil
}

// ValidateEntries checks every entry and that names are unique.
func ValidateEntries(entries []EntryConfig) error {
	seen := make(map[string]bool, len(entries))
	for i, e := range entries {
		if e.Name == "" {
			return fmt.Errorf("schedule[%d].name must not be empty", i)
		}
		if seen[e.Name] {
			return fmt.Errorf("schedule: name %q is used twice; names must be unique", e.Name)
		}
		seen[e.Name] = true
		if err := e.Validate(); err != nil {
			return err
		}
	}
	return nil
}
