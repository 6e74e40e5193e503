package cli_test

import (
	"os"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/cachekeeper/cachekeeper/config"
	"github.com/cachekeeper/cachekeeper/internal/cli"
	"github.com/cachekeeper/cachekeeper/tasks"
	ucli "github.com/urfave/cli/v2"
)

func readDoc(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile("../../" + path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// The README is a front page: short, with the two set-up commands, the
// quick start's commands and a link to every reference page.
func TestReadmeIsAFrontPage(t *testing.T) {
	t.Parallel()
	readme := readDoc(t, "README.md")
	lines := strings.Count(readme, "\n")
	t.Logf("README.md: %d lines", lines)
	if lines > 250 {
		t.Errorf("README.md has %d lines; keep it a front page (<= 250) and move reference text to docs/", lines)
	}
	for _, want := range []string{"make dev", "make test", "go install github.com/cachekeeper/cachekeeper/cmd/cachekeeper@latest",
		"bin/cachekeeper", "cachekeeper config check", "cachekeeper worker", "--wait", "/caches"} {
		if !strings.Contains(readme, want) {
			t.Errorf("README.md lacks %q", want)
		}
	}
	for _, doc := range []string{"docs/configuration.md", "docs/cli.md", "docs/operations.md", "docs/performance.md",
		"docs/internals.md", "docs/reliability.md", "docs/jobs.md", "docs/changes.md"} {
		if !strings.Contains(readme, "("+doc+")") {
			t.Errorf("README.md does not link %s", doc)
		}
		if _, err := os.Stat("../../" + doc); err != nil {
			t.Errorf("README.md links %s: %v", doc, err)
		}
	}
	if regexp.MustCompile(`(?i)\bissue \d+|#\d{2,}\b`).MatchString(readme) && !strings.Contains(readme, "asynq #") {
		t.Error("README.md names an issue number; user docs carry no history")
	}
}

// The job reference documents every job kind; the configuration reference
// every environment variable.
func TestDocsCoverKindsAndEnv(t *testing.T) {
	t.Parallel()
	jobs := readDoc(t, "docs/jobs.md")
	for _, k := range tasks.Kinds() {
		if !strings.Contains(jobs, "`"+k.Kind+"`") {
			t.Errorf("docs/jobs.md does not document kind %s", k.Kind)
		}
	}
	conf := readDoc(t, "docs/configuration.md")
	for _, e := range config.EnvVars {
		if !strings.Contains(conf, e) {
			t.Errorf("docs/configuration.md does not document %s", e)
		}
	}
}

// docs/cli.md has a section for every command of the tree, mentions every
// flag of the command in it, and documents no command or flag that does not
// exist.
func TestCLIReferenceMatchesTheCommandTree(t *testing.T) {
	t.Parallel()
	doc := readDoc(t, "docs/cli.md")
	heading := regexp.MustCompile("(?m)^### `cachekeeper ([a-z -]+)`$")
	sections := map[string]string{}
	locs := heading.FindAllStringSubmatchIndex(doc, -1)
	for i, l := range locs {
		end := len(doc)
		if i+1 < len(locs) {
			end = locs[i+1][0]
		}
		body := doc[l[1]:end]
		if j := strings.Index(body, "\n## "); j >= 0 {
			body = body[:j] // the last command's section ends at the next chapter
		}
		sections[doc[l[2]:l[3]]] = strings.Join(strings.Fields(body), " ")
	}
	// A flag documented for a group (enqueue's --wait) covers its subcommands.
	commands := map[string]*ucli.Command{}
	var walk func([]*ucli.Command, string)
	walk = func(cmds []*ucli.Command, prefix string) {
		for _, c := range cmds {
			p := strings.TrimSpace(prefix + " " + c.Name)
			commands[p] = c
			walk(c.Subcommands, p)
		}
	}
	walk(cli.NewAppForTest().Commands, "")
	conn := map[string]bool{"config": true, "redis-url": true, "database-url": true, "log-level": true,
		"redis-tls-ca-file": true, "redis-tls-cert-file": true, "redis-tls-key-file": true, "redis-tls-server-name": true}
	flagRef := regexp.MustCompile(`--([a-z][a-z-]*)`)
	var paths []string
	for p := range commands {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for _, p := range paths {
		c := commands[p]
		sec, ok := sections[p]
		if !ok {
			t.Errorf("docs/cli.md has no section \"### `cachekeeper %s`\"", p)
			continue
		}
		scope := sec
		for q := p; strings.Contains(q, " "); {
			q = q[:strings.LastIndex(q, " ")]
			scope += sections[q] // a group's section covers the flags all its commands share
		}
		for _, f := range c.Flags {
			name := f.Names()[0]
			if conn[name] && strings.Contains(scope, "connection flags") {
				continue
			}
			if !regexp.MustCompile(`--` + name + `([^a-z-]|$)`).MatchString(scope) {
				t.Errorf("docs/cli.md: section of `cachekeeper %s` does not document `--%s`", p, name)
			}
		}
		for _, m := range flagRef.FindAllStringSubmatch(sec, -1) {
			if !hasFlag(c, m[1]) && !(conn[m[1]] && len(c.Flags) > 0) {
				t.Errorf("docs/cli.md: section of `cachekeeper %s` mentions --%s, which it does not take", p, m[1])
			}
		}
	}
	for s := range sections {
		if commands[s] == nil {
			t.Errorf("docs/cli.md documents `cachekeeper %s`, which does not exist", s)
		}
	}
	t.Logf("%d commands checked against %d sections", len(commands), len(sections))
}

func hasFlag(c *ucli.Command, name string) bool {
	if name == "help" {
		return true
	}
	for _, sub := range append([]*ucli.Command{c}, c.Subcommands...) {
		for _, f := range sub.Flags {
			for _, n := range f.Names() {
				if n == name {
					return true
				}
			}
		}
	}
	return false
}
