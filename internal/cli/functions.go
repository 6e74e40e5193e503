package cli

import (
	"encoding/json"
	"fmt"
	"text/tabwriter"

	"github.com/cachekeeper/cachekeeper/internal/redisx"
	ucli "github.com/urfave/cli/v2"
)

func functionsCommand(io IO) *ucli.Command {
	return &ucli.Command{
		Name:        "functions",
		Usage:       "the read protocol's Redis function library (" + redisx.LibraryName + "), which applications call by name",
		Description: "The worker loads the library on start, on every master of a cluster. See docs/read-protocol.md.",
		Subcommands: []*ucli.Command{
			{
				Name:  "print",
				Usage: "print the library's source, as FUNCTION LOAD takes it",
				Action: func(c *ucli.Context) error {
					if c.Args().Present() {
						return usagef("functions print takes no arguments, got %q", c.Args().First())
					}
					_, err := fmt.Fprint(io.Stdout, redisx.LibraryText())
					return err
				},
			},
			{
				Name:  "load",
				Usage: "load the library on the server (every master of a cluster) unless the same or a newer revision is loaded",
				Flags: append([]ucli.Flag{outputFlag()}, connFlags()...),
				Action: func(c *ucli.Context) error {
					format, err := outputFormat(c)
					if err != nil {
						return err
					}
					svc, err := connectFromFlags(c, io)
					if err != nil {
						return err
					}
					defer svc.Close()
					res, err := redisx.LoadLibrary(c.Context, svc.redis)
					if err != nil {
						return err
					}
					if format == "json" {
						enc := json.NewEncoder(io.Stdout)
						for _, r := range res {
							if err := enc.Encode(map[string]any{"addr": r.Addr, "action": r.Action, "revision_before": r.Revision,
								"revision": redisx.LibraryRevision, "library": redisx.LibraryName}); err != nil {
								return err
							}
						}
						return nil
					}
					tw := tabwriter.NewWriter(io.Stdout, 0, 4, 2, ' ', 0)
					fmt.Fprintln(tw, "SERVER\tACTION\tREVISION BEFORE\tREVISION")
					for _, r := range res {
						addr := r.Addr
						if addr == "" {
							addr = "(server)"
						}
						fmt.Fprintf(tw, "%s\t%s\t%d\t%d\n", addr, r.Action, r.Revision, redisx.LibraryRevision)
					}
					return tw.Flush()
				},
			},
		},
	}
}
