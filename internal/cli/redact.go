package cli

import (
	"strings"

	"github.com/cachekeeper/cachekeeper/config"
)

// argSecrets returns the passwords in the command line's URL flags and in
// the environment variables that hold URLs or passwords, for redaction of
// whatever is printed when the configuration did not even load.
func argSecrets(args []string, env func(string) string) []string {
	var out []string
	for i, a := range args {
		name, val, hasVal := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !strings.HasSuffix(name, "-url") {
			continue
		}
		if !hasVal && i+1 < len(args) {
			val = args[i+1]
		}
		out = append(out, secretsOf(val)...)
	}
	for _, name := range []string{config.EnvRedisURL, config.EnvDatabaseURL} {
		out = append(out, secretsOf(env(name))...)
	}
	return out
}

func secretsOf(u string) []string {
	if u == "" {
		return nil
	}
	var c config.Config
	c.Redis.URL = u
	return c.Secrets()
}
