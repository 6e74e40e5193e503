package cli

import (
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/cachekeeper/cachekeeper/config"
	"github.com/cachekeeper/cachekeeper/internal/bench"
	"github.com/cachekeeper/cachekeeper/internal/testenv"
	ucli "github.com/urfave/cli/v2"
)

func benchConsistencyCommand(io IO) *ucli.Command {
	return &ucli.Command{
		Name:  "consistency",
		Usage: "history checker: no cached row older than the database after quiescence, and the staleness readers saw",
		Description: "Runs at once, on two tables of --keys rows (cache item followed by the change stream, cache app not):\n" +
			"writers that commit version+1 of a row and invalidate through every path (stream: direct SQL seen by\n" +
			"the change stream; client: the Go client's cache:invalidate after the commit, rewarm on every other\n" +
			"write; inbox: an inbox entry; tag: cache:invalidate_tag; pattern: cache:invalidate_pattern), readers\n" +
			"(--reader: leases through package cache, or cache-aside: HGET, on a miss the database and a coalesced warm), warms of every kind (by ids,\n" +
			"coalesced, warm_all), and faults: synchronous-replication stalls (a standby named that never connects,\n" +
			"only on the private PostgreSQL), and the change stream and the worker, processes of this binary, killed\n" +
			"with SIGKILL and started again (--in-process: in this process, stopped by cancelling).\n" +
			"Every commit and read is recorded with its time. After --operations and a --quiescence it compares\n" +
			"every cached row with the database and prints, per path: writes, reads, stale reads (a version older\n" +
			"than one committed before the read began), the staleness window p50/p99/max (and p99/max outside the\n" +
			"injected faults, each fault counted until 1s after it ended), and stale_after_quiescence, whose goal\n" +
			"is 0: the command exits 1 when it is not.\n" +
			"Without --database-url a private PostgreSQL cluster with wal_level=logical is started and removed.",
		Flags: append([]ucli.Flag{
			&ucli.IntFlag{Name: "operations", Aliases: []string{"n"}, Value: 100000, Usage: "reads, writes and warms to run"},
			&ucli.IntFlag{Name: "keys", Value: 200, Usage: "rows per cache (few keys: many races)"},
			&ucli.IntFlag{Name: "writers", Value: 4, Usage: "concurrent writers"},
			&ucli.IntFlag{Name: "readers", Value: 4, Usage: "concurrent readers"},
			&ucli.StringFlag{Name: "reader", Value: bench.ReadLeases, Usage: "the readers' read path: leases (package cache: a lease per miss, fenced fill) or cache-aside (HGET; on a miss the database and a coalesced warm)"},
			&ucli.IntFlag{Name: "read-rate", Value: 2000, Usage: "reads per second of all readers together; -1: no cap"},
			&ucli.IntFlag{Name: "write-rate", Value: 300, Usage: "writes per second of all writers together; -1: no cap (then the figures measure a saturated worker's backlog)"},
			&ucli.StringFlag{Name: "database-url", Usage: "postgres://... (wal_level=logical, REPLICATION role); default: a private PostgreSQL (stalls need it)"},
			&ucli.BoolFlag{Name: "no-faults", Usage: "no stalls and no restarts"},
			&ucli.BoolFlag{Name: "in-process", Usage: "run the worker and the change stream in this process (stopped by cancelling, not killed) instead of as processes of this binary killed with SIGKILL"},
			&ucli.DurationFlag{Name: "stall-every", Value: 4 * time.Second, Usage: "a synchronous-replication stall starts this often"},
			&ucli.DurationFlag{Name: "stall-for", Value: 400 * time.Millisecond, Usage: "how long each stall holds commits invisible"},
			&ucli.DurationFlag{Name: "restart-every", Value: 5 * time.Second, Usage: "the change stream and the worker, alternately, are stopped and started this often"},
			&ucli.DurationFlag{Name: "quiescence", Value: 3 * time.Second, Usage: "wait after the run (then until no job is queued) before comparing the cache with the database"},
		}, benchFlags()...),
		Action: func(c *ucli.Context) error {
			format, err := outputFormat(c)
			if err != nil {
				return err
			}
			logger, err := benchLogger(c, io)
			if err != nil {
				return err
			}
			if r := c.String("reader"); !slices.Contains(bench.ReadPaths, r) {
				return usagef("--reader %q: write one of %s", r, strings.Join(bench.ReadPaths, ", "))
			}
			faults := !c.Bool("no-faults")
			db := config.DatabaseConfig{URL: c.String("database-url")}
			if db.URL == "" {
				logger.Info("bench consistency: starting a private PostgreSQL with wal_level=logical")
				pg, err := testenv.StartPostgres()
				if err != nil {
					return fmt.Errorf("start a private PostgreSQL (or pass --database-url): %w", err)
				}
				defer pg.Stop()
				db.URL = pg.URL("postgres")
			} else if faults && c.IsSet("stall-every") {
				return usagef("--stall-every: stalls change synchronous_standby_names server-wide, so they run only on the private PostgreSQL; drop --database-url or --stall-every")
			}
			url, _, closeRedis, err := benchRedis(c, logger)
			if err != nil {
				return err
			}
			defer closeRedis()
			var parts bench.Parts = bench.InProcess{}
			if !c.Bool("in-process") {
				exe, err := os.Executable()
				if err != nil {
					return fmt.Errorf("find this binary to start worker and changes processes (or pass --in-process): %w", err)
				}
				dir, err := os.MkdirTemp("", "ck-consistency")
				if err != nil {
					return err
				}
				defer os.RemoveAll(dir)
				parts = bench.Processes{Binary: exe, Dir: dir}
			}
			rep, err := bench.Consistency(c.Context, bench.ConsistencyOptions{
				Parts:    parts,
				RedisURL: url, Database: db, Operations: c.Int("operations"), Keys: c.Int("keys"),
				ReadPath: c.String("reader"), Writers: c.Int("writers"), Readers: c.Int("readers"), WriteRate: c.Int("write-rate"), ReadRate: c.Int("read-rate"),
				Stalls: faults && c.String("database-url") == "", StallEvery: c.Duration("stall-every"), StallFor: c.Duration("stall-for"),
				Restarts: faults, RestartEvery: c.Duration("restart-every"), Quiescence: c.Duration("quiescence"), Logger: logger,
			})
			if err != nil {
				return benchError(err)
			}
			if err := printConsistency(io, format, rep); err != nil {
				return err
			}
			if rep.StaleAfterQuiescence > 0 {
				return fmt.Errorf("%d keys stale after quiescence (goal 0): %v", rep.StaleAfterQuiescence, rep.StaleKeys)
			}
			return nil
		},
	}
}

func printConsistency(io IO, format string, rep *bench.ConsistencyReport) error {
	if format == "json" {
		if err := json.NewEncoder(io.Stdout).Encode(rep); err != nil {
			return fmt.Errorf("write results: %w", err)
		}
		return nil
	}
	tw := tabwriter.NewWriter(io.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "PATH\tWRITES\tREADS\tSTALE READS\tSTALENESS P50\tP99\tMAX\tP99 OUTSIDE FAULTS\tMAX OUTSIDE FAULTS\tSTALE AFTER QUIESCENCE")
	for _, p := range rep.Paths {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%.1f ms\t%.1f ms\t%.1f ms\t%.1f ms\t%.1f ms\t%d\n", p.Path, p.Writes, p.Reads, p.StaleReads,
			p.P50Ms, p.P99Ms, p.MaxMs, p.P99OutsideOutagesMs, p.MaxOutsideOutagesMs, p.StaleAfterQuiescence)
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("write results: %w", err)
	}
	_, err := fmt.Fprintf(io.Stdout, "read_path=%s operations=%d seconds=%.1f warms=%d stalls=%d restarts=%d stale_after_quiescence=%d\n",
		rep.ReadPath, rep.Operations, rep.Seconds, rep.Warms, rep.Stalls, rep.Restarts, rep.StaleAfterQuiescence)
	return err
}
