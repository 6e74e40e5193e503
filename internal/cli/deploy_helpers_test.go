package cli_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cachekeeper/cachekeeper/config"
	"github.com/cachekeeper/cachekeeper/internal/cli"
	"github.com/cachekeeper/cachekeeper/internal/httpapi"
	ucli "github.com/urfave/cli/v2"
	"gopkg.in/yaml.v3"
)

// decodeStrict decodes every YAML document of b into a value made by next
// (called once per document with the document's kind, "" when it has none),
// refusing any field the typed structs do not declare.
func decodeStrict(t *testing.T, name string, b []byte, next func(kind string) any) {
	t.Helper()
	dec := yaml.NewDecoder(bytes.NewReader(b))
	for i := 0; ; i++ {
		var node yaml.Node
		if err := dec.Decode(&node); errors.Is(err, io.EOF) {
			return
		} else if err != nil {
			t.Fatalf("%s: document %d: %v", name, i, err)
		}
		var head struct {
			Kind string `yaml:"kind"`
		}
		_ = node.Decode(&head)
		doc, err := yaml.Marshal(&node)
		if err != nil {
			t.Fatal(err)
		}
		strict := yaml.NewDecoder(bytes.NewReader(doc))
		strict.KnownFields(true)
		if err := strict.Decode(next(head.Kind)); err != nil {
			t.Fatalf("%s: document %d (kind %q): %v", name, i, head.Kind, err)
		}
	}
}

func readDeploy(t *testing.T, rel string) []byte {
	t.Helper()
	b, err := os.ReadFile("../../deploy/" + rel)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// checkCommandLine resolves args (without the program name) in the real
// command tree: every word must be a command or subcommand, every flag one
// that command declares, and every flag value must parse as its type.
// It returns the leaf command's path and the flags given.
func checkCommandLine(args []string) (string, map[string]string, error) {
	app := cli.NewAppForTest()
	cmds := app.Commands
	var cmd *ucli.Command
	var path []string
	flags := map[string]string{}
	for i := 0; i < len(args); i++ {
		a := args[i]
		if strings.HasPrefix(a, "-") {
			if cmd == nil {
				return "", nil, fmt.Errorf("%v: flag %s before any command", args, a)
			}
			name, value, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
			f := findFlag(cmd, name)
			if f == nil {
				return "", nil, fmt.Errorf("%v: 'cachekeeper %s' has no flag %s", args, strings.Join(path, " "), a)
			}
			if _, isBool := f.(*ucli.BoolFlag); !isBool && !hasValue {
				if i+1 >= len(args) {
					return "", nil, fmt.Errorf("%v: flag %s needs a value", args, a)
				}
				i++
				value = args[i]
			}
			if err := checkFlagValue(f, value, hasValue); err != nil {
				return "", nil, fmt.Errorf("%v: %s: %w", args, a, err)
			}
			flags[f.Names()[0]] = value
			continue
		}
		var found *ucli.Command
		for _, c := range cmds {
			if c.HasName(a) {
				found = c
			}
		}
		if found == nil {
			return "", nil, fmt.Errorf("%v: %q is not a command of 'cachekeeper %s'", args, a, strings.Join(path, " "))
		}
		cmd, cmds, path = found, found.Subcommands, append(path, a)
	}
	if cmd == nil {
		return "", nil, fmt.Errorf("%v: no command", args)
	}
	if len(cmd.Subcommands) > 0 && cmd.Action == nil {
		return "", nil, fmt.Errorf("%v: 'cachekeeper %s' needs a subcommand", args, strings.Join(path, " "))
	}
	return strings.Join(path, " "), flags, nil
}

func findFlag(cmd *ucli.Command, name string) ucli.Flag {
	for _, f := range cmd.Flags {
		for _, n := range f.Names() {
			if n == name {
				return f
			}
		}
	}
	return nil
}

func checkFlagValue(f ucli.Flag, v string, explicit bool) error {
	var err error
	switch f.(type) {
	case *ucli.BoolFlag:
		if explicit {
			_, err = strconv.ParseBool(v)
		}
	case *ucli.IntFlag, *ucli.Int64Flag, *ucli.UintFlag:
		_, err = strconv.Atoi(v)
	case *ucli.DurationFlag:
		_, err = time.ParseDuration(v)
	case *ucli.StringFlag, *ucli.StringSliceFlag:
	default:
		err = fmt.Errorf("flag type %T not checked by this test: add it", f)
	}
	return err
}

// knownEnv is every environment variable cachekeeper reads.
func knownEnv() map[string]bool {
	m := map[string]bool{httpapi.EnvUIUser: true, httpapi.EnvUIPassword: true}
	for _, n := range config.EnvVars {
		m[n] = true
	}
	return m
}

// checkConfig validates an embedded configuration as `config check` does
// (defaults, the YAML strictly, the environment, then Validate).
func checkConfig(body string, env map[string]string) (config.Config, error) {
	cfg := config.Default()
	if err := config.Parse([]byte(body), &cfg); err != nil {
		return cfg, err
	}
	if err := cfg.ApplyEnv(func(k string) string { return env[k] }); err != nil {
		return cfg, err
	}
	return cfg, cfg.Validate()
}

// portOf returns the port of a listen address such as ":9090".
func portOf(t *testing.T, addr string) int {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("address %q: %v", addr, err)
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Fatalf("address %q: %v", addr, err)
	}
	return n
}

// getStatus GETs url until it answers want (bounded) and returns the last status.
func getStatus(url string, want int, user, pass string) (int, error) {
	hc := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 5 * time.Second}
	deadline := time.Now().Add(20 * time.Second)
	for {
		req, _ := http.NewRequest(http.MethodGet, url, nil)
		if user != "" {
			req.SetBasicAuth(user, pass)
		}
		resp, err := hc.Do(req)
		code := 0
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			code = resp.StatusCode
		}
		if code == want || time.Now().After(deadline) {
			return code, err
		}
		time.Sleep(50 * time.Millisecond)
	}
}
