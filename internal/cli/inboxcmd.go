package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/cachekeeper/cachekeeper/internal/inbox"
	ucli "github.com/urfave/cli/v2"
)

func inboxCommand(io IO) *ucli.Command {
	indexFlag := &ucli.IntSliceFlag{Name: "index", Usage: "dead letter by its INDEX in 'inbox dead list' (repeatable)"}
	return &ucli.Command{
		Name:  "inbox",
		Usage: "the Redis-list inbox: its dead letters (entries the worker refused, with the reason)",
		Subcommands: []*ucli.Command{{
			Name:  "dead",
			Usage: "list (the default), replay or purge the inbox's dead letters",
			Description: "Dead letters are kept newest first, at most inbox.dead_max of them.\n" +
				"INDEX 0 is the newest; indices shift as the worker adds entries, but replay and purge\n" +
				"act on the entry read at that index, atomically, or fail if it is gone.",
			Subcommands: []*ucli.Command{
				{
					Name: "list", Usage: "list dead letters, newest first",
					Flags: append([]ucli.Flag{&ucli.IntFlag{Name: "limit", Value: 50, Usage: "at most this many (0: all)"}, outputFlag()}, connFlags()...),
					Action: func(c *ucli.Context) error {
						format, err := outputFormat(c)
						if err != nil {
							return err
						}
						if c.Int("limit") < 0 {
							return usagef("--limit must be 0 (all) or positive")
						}
						svc, err := connectFromFlags(c, io)
						if err != nil {
							return err
						}
						defer svc.Close()
						recs, err := inbox.ListDead(c.Context, svc.redis, svc.cfg.Inbox.Key, 0, c.Int("limit"))
						if err != nil {
							return err
						}
						if format == "json" {
							enc := json.NewEncoder(io.Stdout)
							for _, r := range recs {
								if err := enc.Encode(deadJSON(r)); err != nil {
									return err
								}
							}
							return nil
						}
						total, err := inbox.CountDead(c.Context, svc.redis, svc.cfg.Inbox.Key)
						if err != nil {
							return err
						}
						tw := tabwriter.NewWriter(io.Stdout, 0, 4, 2, ' ', 0)
						fmt.Fprintln(tw, "INDEX\tTIME\tREASON\tENTRY")
						for _, r := range recs {
							fmt.Fprintf(tw, "%d\t%s\t%s\t%s\n", r.Index, r.Time.Format(time.RFC3339), oneLine(r.Error), deadEntryLine(r.DeadLetter))
						}
						fmt.Fprintf(tw, "(%d shown of %d dead letters)\n", len(recs), total)
						return tw.Flush()
					},
				},
				{
					Name: "replay", Usage: "push dead letters back onto the inbox, as they are or fixed (--entry), to be validated again",
					Flags: append([]ucli.Flag{indexFlag,
						&ucli.BoolFlag{Name: "all", Usage: "every dead letter"},
						&ucli.StringFlag{Name: "entry", Usage: "with one --index: replay this fixed JSON entry instead of the stored one"},
						outputFlag()}, connFlags()...),
					Action: func(c *ucli.Context) error { return deadAction(c, io, "replay") },
				},
				{
					Name: "purge", Usage: "delete dead letters (--index N, or --all --yes)",
					Flags: append([]ucli.Flag{indexFlag,
						&ucli.BoolFlag{Name: "all", Usage: "every dead letter"},
						&ucli.BoolFlag{Name: "yes", Usage: "confirm --all"},
						outputFlag()}, connFlags()...),
					Action: func(c *ucli.Context) error { return deadAction(c, io, "purge") },
				},
			},
		}},
	}
}

type deadLetterJSON struct {
	Index       int       `json:"index"`
	Time        time.Time `json:"time"`
	Error       string    `json:"error"`
	Entry       string    `json:"entry"`
	EntryBase64 string    `json:"entry_base64,omitempty"`
	Size        int       `json:"size,omitempty"`
	Truncated   bool      `json:"truncated,omitempty"`
}

// deadEntryLine shows a dead letter's entry on one line, at most
// deadShownBytes of it, saying when it was cut or is not UTF-8.
func deadEntryLine(d inbox.DeadLetter) string {
	const deadShownBytes = 200
	e := oneLine(d.Entry)
	cut := d.Truncated
	if len(e) > deadShownBytes {
		e, cut = strings.ToValidUTF8(e[:deadShownBytes], ""), true
	}
	if cut {
		e += fmt.Sprintf(" ... (%d bytes)", d.Size)
	}
	if d.EntryBase64 != "" {
		e += " (not UTF-8: exact bytes in entry_base64, -o json)"
	}
	return e
}

func deadJSON(r inbox.DeadRecord) deadLetterJSON {
	return deadLetterJSON{Index: r.Index, Time: r.Time, Error: r.Error, Entry: r.Entry,
		EntryBase64: r.EntryBase64, Size: r.Size, Truncated: r.Truncated}
}

func deadAction(c *ucli.Context, io IO, op string) error {
	format, err := outputFormat(c)
	if err != nil {
		return err
	}
	indices, all := c.IntSlice("index"), c.Bool("all")
	switch {
	case len(indices) == 0 && !all:
		return usagef("give --index N (see 'cachekeeper inbox dead list') or --all")
	case len(indices) > 0 && all:
		return usagef("--index and --all cannot be combined")
	case c.IsSet("entry") && len(indices) != 1:
		return usagef("--entry replaces one dead letter: give exactly one --index")
	case op == "purge" && all && !c.Bool("yes"):
		return usagef("purging every dead letter needs --yes")
	}
	for _, i := range indices {
		if i < 0 {
			return usagef("--index %d must not be negative", i)
		}
	}
	var fixed string
	if c.IsSet("entry") {
		fixed = c.String("entry")
		if !json.Valid([]byte(fixed)) {
			return usagef("--entry is not valid JSON: %.60s", fixed)
		}
	}
	svc, err := connectFromFlags(c, io)
	if err != nil {
		return err
	}
	defer svc.Close()
	key := svc.cfg.Inbox.Key
	if op == "purge" && all {
		n, err := inbox.PurgeAllDead(c.Context, svc.redis, key)
		if err != nil {
			return err
		}
		return printDeadDone(io, format, op, n)
	}
	var recs []inbox.DeadRecord
	if all {
		if recs, err = inbox.ListDead(c.Context, svc.redis, key, 0, 0); err != nil {
			return err
		}
	} else {
		for _, i := range indices {
			got, err := inbox.ListDead(c.Context, svc.redis, key, i, 1)
			if err != nil {
				return err
			}
			if len(got) == 0 {
				return notFoundf("no dead letter at index %d (see 'cachekeeper inbox dead list')", i)
			}
			recs = append(recs, got[0])
		}
	}
	var n int64
	for _, r := range recs {
		entry := fixed
		if entry == "" && op == "replay" {
			if entry, err = r.Replayable(); err != nil {
				return usagef("dead letter %d: %v (--entry)", r.Index, err)
			}
		}
		if op == "replay" {
			err = inbox.ReplayDead(c.Context, svc.redis, key, r.Raw, entry)
		} else {
			err = inbox.PurgeDead(c.Context, svc.redis, key, r.Raw)
		}
		if errors.Is(err, inbox.ErrDeadLetterGone) {
			fmt.Fprintf(io.Stderr, "cachekeeper: dead letter %d was removed meanwhile; skipped\n", r.Index)
			continue
		}
		if err != nil {
			return fmt.Errorf("%s after %d done: %w", op, n, err)
		}
		n++
	}
	return printDeadDone(io, format, op, n)
}

func printDeadDone(io IO, format, op string, n int64) error {
	if format == "json" {
		return json.NewEncoder(io.Stdout).Encode(map[string]any{"action": op, "count": n})
	}
	if op == "replay" {
		fmt.Fprintf(io.Stdout, "%d dead letters pushed back onto the inbox\n", n)
	} else {
		fmt.Fprintf(io.Stdout, "%d dead letters deleted\n", n)
	}
	return nil
}
