package cli

import (
	"io"

	ucli "github.com/urfave/cli/v2"
)

// NewAppForTest is the real command tree, for tests that check what the
// deploy manifests run against the commands and flags that exist.
func NewAppForTest() *ucli.App {
	return newApp(IO{Stdout: io.Discard, Stderr: io.Discard, Env: func(string) string { return "" }}, func() {})
}
