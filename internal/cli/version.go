package cli

import (
	"encoding/json"
	"fmt"
	"runtime"

	"github.com/cachekeeper/cachekeeper/internal/httpapi"
	ucli "github.com/urfave/cli/v2"
)

// Version is set at build time with -ldflags "-X ...cli.Version=v1.2.3".
var Version = "dev"

func versionCommand(io IO) *ucli.Command {
	return &ucli.Command{
		Name:  "version",
		Usage: "print the version of cachekeeper, Go and asynq",
		Flags: []ucli.Flag{outputFlag()},
		Action: func(c *ucli.Context) error {
			format, err := outputFormat(c)
			if err != nil {
				return err
			}
			asynqVersion := httpapi.AsynqVersion()
			if format == "json" {
				return json.NewEncoder(io.Stdout).Encode(map[string]string{
					"cachekeeper": Version, "go": runtime.Version(), "asynq": asynqVersion, "os": runtime.GOOS, "arch": runtime.GOARCH,
				})
			}
			fmt.Fprintf(io.Stdout, "cachekeeper %s (%s, asynq %s, %s/%s)\n", Version, runtime.Version(), asynqVersion, runtime.GOOS, runtime.GOARCH)
			return nil
		},
	}
}
