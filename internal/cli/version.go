package cli

import (
	"fmt"
	"runtime"
	"runtime/debug"

	ucli "github.com/urfave/cli/v2"
)

// Version is set at build time with -ldflags "-X ...cli.Version=v1.2.3".
var Version = "dev"

func versionCommand(io IO) *ucli.Command {
	return &ucli.Command{
		Name:  "version",
		Usage: "print the version of cachekeeper, Go and asynq",
		Action: func(c *ucli.Context) error {
			asynqVersion := "unknown"
			if bi, ok := debug.ReadBuildInfo(); ok {
				for _, d := range bi.Deps {
					if d.Path == "github.com/hibiken/asynq" {
						asynqVersion = d.Version
					}
				}
			}
			fmt.Fprintf(io.Stdout, "cachekeeper %s (%s, asynq %s, %s/%s)\n", Version, runtime.Version(), asynqVersion, runtime.GOOS, runtime.GOARCH)
			return nil
		},
	}
}
