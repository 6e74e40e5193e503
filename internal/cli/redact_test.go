package cli_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cachekeeper/cachekeeper/config"
)

// No password is ever printed: bad URLs of every kind, given by flag, by
// environment variable or in the config file, through the commands that
// read them. The CLI runs in-process; nothing listens on the ports named.
func TestNoPasswordOnStdoutOrStderr(t *testing.T) {
	t.Parallel()
	const pw = "s3cretPW"
	redisURLs := []string{
		"redis://ck:" + pw + "@127.0.0.1:notaport/0",   // bad port
		"redis://ck:" + pw + "%zz@127.0.0.1:6379/0",    // bad escape
		"redis://ck:" + pw + "@/0",                     // missing host
		"rediss://ck:" + pw + "@127.0.0.1:1/0",         // TLS, unreachable
		"redis://:" + pw + "@127.0.0.1:1/0",            // password only, unreachable
		"unix://ck:" + pw + "@/nonexistent/redis.sock", // unix socket
		"redis://ck:" + pw + "@127.0.0.1:1/notadb",     // bad db
		"redis://ck:p@" + pw + "@127.0.0.1:1/0",        // unescaped '@'
		"http://ck:" + pw + "@127.0.0.1:1/0",           // wrong scheme
		"ck:" + pw + "@127.0.0.1:1",                    // no scheme
		"redis://ck:" + pw + "@[::1:1/0",               // bad IPv6 literal
	}
	dbURLs := []string{
		"postgres://ck:" + pw + "@127.0.0.1:notaport/db",
		"postgres://ck:" + pw + "%zz@127.0.0.1:1/db",
		"postgres://ck:" + pw + "@127.0.0.1:1/db?sslmode=disable",
		"postgres://127.0.0.1:1/db?password=" + pw,
		"mysql://ck:" + pw + "@127.0.0.1:notaport/db",
		"mysql://ck:" + pw + "%zz@127.0.0.1:1/db",
		"mysql://ck:" + pw + "@127.0.0.1:1/db",
		"ck:" + pw + "@tcp(127.0.0.1:1)/db",       // MySQL DSN
		"ck:" + pw + "@tcp(127.0.0.1:notaport/db", // broken MySQL DSN
		"sqlite://ck:" + pw + "@/nonexistent/dir/x.db",
		"oracle://ck:" + pw + "@127.0.0.1:1/db", // unsupported scheme
	}
	dir := t.TempDir()
	type tc struct {
		name string
		env  map[string]string
		args []string
	}
	var cases []tc
	commands := [][]string{{"config", "check"}, {"config", "show"}, {"worker"}, {"enqueue", "notify", "--channel", "c", "--message", "m"}}
	for i, u := range redisURLs {
		file := filepath.Join(dir, "redis"+string(rune('a'+i))+".yaml")
		if err := os.WriteFile(file, []byte("redis:\n  url: \""+u+"\"\ndatabase:\n  url: sqlite://"+filepath.Join(dir, "x.db")+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		for _, cmd := range commands {
			cases = append(cases,
				tc{"flag " + u, nil, append(append([]string{}, cmd...), "--redis-url", u)},
				tc{"flag= " + u, nil, append(append([]string{}, cmd...), "--redis-url="+u)},
				tc{"env " + u, map[string]string{config.EnvRedisURL: u}, cmd},
				tc{"file " + u, nil, append(append([]string{}, cmd...), "--config", file)},
			)
		}
	}
	for _, u := range dbURLs {
		for _, cmd := range [][]string{{"config", "check"}, {"config", "show"}, {"worker"}} {
			cases = append(cases,
				tc{"db flag " + u, nil, append(append([]string{}, cmd...), "--redis-url", "redis://127.0.0.1:1/0", "--database-url", u)},
				tc{"db env " + u, map[string]string{config.EnvDatabaseURL: u, config.EnvRedisURL: "redis://127.0.0.1:1/0"}, cmd},
			)
		}
	}
	// Most cases wait for go-redis to give up on a closed port (about 2 s):
	// run many at once rather than two at a time as t.Parallel would here.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	start := time.Now()
	sem := make(chan struct{}, 32)
	var wg sync.WaitGroup
	for _, c := range cases {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			res := run(t, ctx, c.env, c.args...)
			for where, out := range map[string]string{"stdout": res.stdout, "stderr": res.stderr} {
				if strings.Contains(out, pw) {
					t.Errorf("%s: %v: the password appears on %s (exit %d):\n%s", c.name, c.args, where, res.code, out)
				}
			}
			if res.code == 0 && c.args[0] != "config" {
				t.Errorf("%s: %v exited 0", c.name, c.args)
			}
		}()
	}
	wg.Wait()
	t.Logf("%d cases in %s", len(cases), time.Since(start).Round(time.Millisecond))
}

func TestRedactOnStringsThatDoNotParse(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"redis://ck:s3cret@host:notaport/0":                             "redis://ck:xxxxx@host:notaport/0",
		"redis://ck:s3c%zzret@host/0":                                   "redis://ck:xxxxx@host/0",
		"redis://ck:p@ss@host/0":                                        "redis://ck:xxxxx@host/0",
		"redis:xxxxx@":                                                  "redis:xxxxx@",
		"redis://host:6379/0":                                           "redis://host:6379/0",
		"ck:s3cret@tcp(h:3306)/db":                                      "ck:xxxxx@tcp(h:3306)/db",
		"mysql://root:pw1@tcp(h)/db":                                    "mysql://root:xxxxx@tcp(h)/db",
		"host=h user=u password=s3cret dbname=d":                        "host=h user=u password=xxxxx dbname=d",
		"postgres://h/db?sslmode=x&password=s3cr":                       "postgres://h/db?sslmode=x&password=xxxxx",
		`parse "redis://ck:s3cret@h:x/0": invalid port ":x" after host`: `parse "redis://ck:xxxxx@h:x/0": invalid port ":x" after host`,
		"ck:s3cret@127.0.0.1:1":                                         "ck:xxxxx@127.0.0.1:1",
		"expected redis://[user:password@]host":                         "expected redis://[user:password@]host",
	} {
		if got := config.Redact(in); got != want {
			t.Errorf("Redact(%q) = %q, want %q", in, got, want)
		}
	}
}
