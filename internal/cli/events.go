package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/cachekeeper/cachekeeper/events"
	ucli "github.com/urfave/cli/v2"
)

func eventsCommand(cio IO) *ucli.Command {
	return &ucli.Command{
		Name:  "events",
		Usage: "tail the cache-change events the worker publishes, until Ctrl-C",
		Description: "One line per event (time, type, cache, ids, key count, task id), or with -o json one\n" +
			"JSON object per line, exactly as published. After a dropped connection a line says that\n" +
			"events may have been missed (pub/sub does not replay); that line is always shown.",
		Flags: append([]ucli.Flag{
			&ucli.StringSliceFlag{Name: "cache", Usage: "show only events of this cache (repeatable)"},
			&ucli.StringFlag{Name: "channel", Usage: "pub/sub channel (default events.channel from the config)"},
			&ucli.IntFlag{Name: "count", Usage: "exit after this many events (0: until Ctrl-C)"},
			outputFlag(),
		}, connFlags()...),
		ArgsUsage: " ",
		Action:    func(c *ucli.Context) error { return runEvents(c, cio) },
	}
}

func runEvents(c *ucli.Context, cio IO) error {
	if c.Args().Present() {
		return usagef("unexpected argument %q: filter by cache with --cache", c.Args().First())
	}
	format, err := outputFormat(c)
	if err != nil {
		return err
	}
	if c.Int("count") < 0 {
		return usagef("--count must not be negative")
	}
	caches := c.StringSlice("cache")
	for _, name := range caches {
		if strings.TrimSpace(name) == "" {
			return usagef("--cache must not be empty")
		}
	}
	cfg, err := loadConfig(c, cio)
	if err != nil {
		return err
	}
	channel := cfg.Events.Channel
	if c.IsSet("channel") {
		if channel = c.String("channel"); channel == "" {
			return usagef("--channel must not be empty")
		}
	} else if cfg.Events.Disabled {
		return usagef("events are disabled in the configuration (events.disabled: true): the worker publishes nothing")
	}
	for _, name := range caches {
		if _, ok := cfg.Caches[name]; !ok && len(cfg.Caches) > 0 {
			return usagef("--cache %q is not a configured cache (caches: %s)", name, strings.Join(cfg.CacheNames(), ", "))
		}
	}
	svc, err := connect(c.Context, cfg, false)
	if err != nil {
		return err
	}
	defer svc.Close()
	logger := newLogger(cfg, cio.Stderr)

	ctx, cancel := context.WithCancel(c.Context)
	defer cancel()
	p := &eventPrinter{w: cio.Stdout, json: format == "json", caches: caches, limit: c.Int("count"), done: cancel}
	sub := events.Subscriber{
		Client: svc.redis, Channel: channel, Logger: logger,
		OnSubscribed: p.subscribedOnce(func() {
			fmt.Fprintf(cio.Stderr, "listening on %s (Ctrl-C to stop)\n", channel)
		}),
	}
	if err := sub.Run(ctx, p.print); err != nil {
		return err
	}
	return p.err
}

// eventPrinter writes events as lines; it stops the subscription after
// limit events (when not 0) or on a write error.
type eventPrinter struct {
	w      io.Writer
	json   bool
	caches []string
	limit  int
	done   func()

	once    sync.Once
	printed int
	err     error
}

func (p *eventPrinter) subscribedOnce(fn func()) func() {
	return func() { p.once.Do(fn) }
}

func (p *eventPrinter) print(e events.Event) {
	if p.err != nil || (p.limit > 0 && p.printed >= p.limit) {
		return
	}
	if !e.Missed && len(p.caches) > 0 && !slices.Contains(p.caches, e.Cache) {
		return
	}
	var err error
	if p.json {
		err = json.NewEncoder(p.w).Encode(e)
	} else {
		_, err = fmt.Fprintln(p.w, humanEvent(e))
	}
	if err != nil {
		p.err = fmt.Errorf("write event: %w", err)
		p.done()
		return
	}
	p.printed++
	if p.limit > 0 && p.printed >= p.limit {
		p.done()
	}
}

// humanEvent renders an event as one line, for example
//
//	15:04:05.123  invalidated  user  ids=1,2  keys=2  task=4f1c...
func humanEvent(e events.Event) string {
	ts := e.Time.Local().Format("15:04:05.000")
	if e.Missed {
		return ts + "  ! reconnected: events published while disconnected were missed"
	}
	parts := []string{ts, strings.TrimPrefix(e.Type, "cache.")}
	if e.Cache != "" {
		parts = append(parts, e.Cache)
	}
	if e.Pattern != "" {
		parts = append(parts, "pattern="+e.Pattern)
	}
	if e.Tag != "" {
		parts = append(parts, "tag="+e.Tag)
	}
	if e.UserID != "" {
		parts = append(parts, "user="+e.UserID)
	}
	if len(e.IDs) > 0 {
		parts = append(parts, "ids="+capJoin(e.IDs, 10))
	}
	switch {
	case len(e.IDs) == 0 && len(e.Keys) > 0:
		parts = append(parts, "keys="+strconv.Itoa(e.KeyCount)+" ("+capJoin(e.Keys, 3)+")")
	default:
		parts = append(parts, "keys="+strconv.Itoa(e.KeyCount))
	}
	if e.TaskID != "" {
		parts = append(parts, "task="+e.TaskID)
	}
	return strings.Join(parts, "  ")
}

func capJoin(s []string, n int) string {
	if len(s) <= n {
		return strings.Join(s, ",")
	}
	return strings.Join(s[:n], ",") + ",+" + strconv.Itoa(len(s)-n) + " more"
}
