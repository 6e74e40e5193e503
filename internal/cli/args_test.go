package cli

import (
	"bytes"
	"context"
	"strings"
	"testing"

	ucli "github.com/urfave/cli/v2"
)

// walk calls leaf for every command without subcommands and group for every
// command with them, with the names leading to it.
func walk(cmds []*ucli.Command, path []string, leaf, group func([]string, *ucli.Command)) {
	for _, c := range cmds {
		p := append(append([]string(nil), path...), c.Name)
		if len(c.Subcommands) == 0 {
			leaf(p, c)
			continue
		}
		group(p, c)
		walk(c.Subcommands, p, leaf, group)
	}
}

// Every command refuses what it cannot do with exit 2 and one line naming
// the problem and the valid choices; nothing runs (the Redis URL points at
// a closed port, so reaching a connection would exit 1 instead).
func TestEveryCommandRefusesStrayInput(t *testing.T) {
	t.Parallel()
	type tc struct {
		args []string
		want string
	}
	var cases []tc
	closed := []string{"--redis-url", "redis://127.0.0.1:1/0"}
	app := newApp(IO{Stdout: &bytes.Buffer{}, Stderr: &bytes.Buffer{}}, func() {})
	walk(app.Commands, nil, func(p []string, c *ucli.Command) {
		cases = append(cases, tc{append(append([]string(nil), p...), "--no-such-flag"), "has no flag --no-such-flag"})
		if _, ok := flagTakesValue(c, "config"); !ok && len(c.Flags) == 0 {
			cases[len(cases)-1].want = "takes no flags"
		}
		extra := append(append([]string(nil), p...), "stray1", "stray2", "stray3")
		if _, ok := flagTakesValue(c, "redis-url"); ok {
			extra = append(extra, closed...)
		}
		want := "takes no arguments"
		if strings.TrimSpace(c.ArgsUsage) != "" {
			want = " one "
		}
		cases = append(cases, tc{extra, want})
		if _, ok := flagTakesValue(c, "config"); !ok {
			cases = append(cases, tc{append([]string{"--config", "x.yaml"}, p...), "takes no flags"})
			if len(c.Flags) > 0 {
				cases[len(cases)-1].want = "has no flag --config"
			}
		}
	}, func(p []string, c *ucli.Command) {
		cases = append(cases, tc{append(append([]string(nil), p...), "no-such-sub"), `unknown subcommand "no-such-sub"`})
		if findCommand(c.Subcommands, "list") == nil && !runnable(c) {
			cases = append(cases, tc{p, "needs a subcommand: " + names(c.Subcommands)})
		}
	})
	cases = append(cases,
		tc{[]string{"no-such-command"}, `unknown command "no-such-command" (commands: worker,`},
		tc{[]string{"--no-such-flag"}, "flag --no-such-flag comes without a command"},
		tc{[]string{"task", "show", "--queue"}, "flag --queue needs a value"},
		// A command that runs by itself: its own checks answer, not "needs a subcommand".
		tc{[]string{"changes"}, "no cache has a changes: block"},
	)
	for _, c := range cases {
		var out, errb bytes.Buffer
		code := Run(context.Background(), c.args, IO{Stdout: &out, Stderr: &errb})
		line := strings.TrimSpace(errb.String())
		if code != ExitUsage || strings.Contains(line, "\n") || !strings.Contains(line, c.want) {
			t.Errorf("%q: exit %d, stderr %q; want exit 2 and one line containing %q", c.args, code, errb.String(), c.want)
		}
		if out.Len() != 0 {
			t.Errorf("%q printed to stdout: %q", c.args, out.String())
		}
	}
}

// `cachekeeper help [command...]` and --help on every command print help and
// exit 0.
func TestHelpEverywhere(t *testing.T) {
	t.Parallel()
	var paths [][]string
	app := newApp(IO{Stdout: &bytes.Buffer{}, Stderr: &bytes.Buffer{}}, func() {})
	add := func(p []string, _ *ucli.Command) { paths = append(paths, p) }
	walk(app.Commands, nil, add, add)
	check := func(args []string, want string) {
		var out, errb bytes.Buffer
		code := Run(context.Background(), args, IO{Stdout: &out, Stderr: &errb})
		if code != 0 || !strings.Contains(out.String(), want) {
			t.Errorf("%q: exit %d, stdout %.200q, stderr %q; want help naming %q", args, code, out.String(), errb.String(), want)
		}
	}
	check([]string{"help"}, "COMMANDS:")
	check([]string{"--help"}, "COMMANDS:")
	for _, p := range paths {
		name := "cachekeeper " + strings.Join(p, " ")
		check(append([]string{"help"}, p...), name)
		check(append(append([]string(nil), p...), "--help"), name)
	}
}

func TestNormalizeArgsMovesFlags(t *testing.T) {
	t.Parallel()
	app := newApp(IO{Stdout: &bytes.Buffer{}, Stderr: &bytes.Buffer{}}, func() {})
	cases := []struct{ in, want string }{
		{"--config a.yaml worker", "worker --config a.yaml"},
		{"-c a.yaml task show ID --queue q", "task show -c a.yaml --queue q -- ID"},
		{"task --redis-url=r show ID", "task show --redis-url=r -- ID"},
		{"task show -- -dash-id", "task show -- -dash-id"},
		{"help task show", "task show --help"},
		{"--version", "--version"},
	}
	for _, c := range cases {
		got, err := normalizeArgs(app, strings.Fields(c.in))
		if err != nil || strings.Join(got, " ") != c.want {
			t.Errorf("%q: got %q, %v; want %q", c.in, got, err, c.want)
		}
	}
}

func runHere(args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := Run(context.Background(), args, IO{Stdout: &out, Stderr: &errb})
	return code, out.String(), errb.String()
}

func TestCompletionAndConsistentOutput(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		args []string
		want []string
	}{
		{[]string{"completion", "bash"}, []string{"--generate-bash-completion", "complete -o bashdefault -o default -F _cachekeeper cachekeeper"}},
		{[]string{"completion", "zsh"}, []string{"#compdef cachekeeper", "compdef _cachekeeper cachekeeper"}},
		{[]string{"completion", "fish"}, []string{"complete -c cachekeeper", "'queues'"}},
		// real defaults in help
		{[]string{"worker", "--help"}, []string{"(default: 20)", "(default: 4)", `(default: ":9090")`}},
		// the YAML's names and Go duration strings, one line
		{[]string{"config", "show", "-o", "json"}, []string{`"recover_after":"1m0s"`, `"dead_max":10000`, `"key_prefix":"cachekeeper:"`}},
		// global flags before the command name, flags after arguments
		{[]string{"--log-level", "debug", "config", "show"}, []string{"level: debug"}},
	} {
		code, out, errOut := runHere(c.args...)
		if code != 0 {
			t.Errorf("%q: exit %d, stderr %q", c.args, code, errOut)
		}
		for _, w := range c.want {
			if !strings.Contains(out, w) {
				t.Errorf("%q: output lacks %q:\n%.300s", c.args, w, out)
			}
		}
		if c.args[len(c.args)-1] == "json" && strings.Count(strings.TrimSpace(out), "\n") != 0 {
			t.Errorf("%q: want one JSON object on one line", c.args)
		}
	}
	if code, _, errOut := runHere("completion", "tcsh"); code != ExitUsage || !strings.Contains(errOut, "shells: bash, zsh, fish") {
		t.Errorf("completion tcsh: exit %d, %q", code, errOut)
	}
}
