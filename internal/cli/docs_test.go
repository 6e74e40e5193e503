package cli_test

import (
	"os"
	"strings"
	"testing"

	"github.com/cachekeeper/cachekeeper/config"
	"github.com/cachekeeper/cachekeeper/tasks"
)

// The README documents every job kind, every top-level command and every
// environment variable; this keeps it from drifting from the code.
func TestReadmeCoversKindsCommandsAndEnv(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := string(b)
	for _, k := range tasks.Kinds() {
		if !strings.Contains(readme, "`"+k.Kind+"`") {
			t.Errorf("README does not document kind %s", k.Kind)
		}
	}
	for _, cmd := range []string{"worker", "scheduler", "schedule list", "enqueue", "queues", "task show", "events", "config check", "config show", "dev", "bench", "version"} {
		if !strings.Contains(readme, "cachekeeper "+cmd) {
			t.Errorf("README does not document `cachekeeper %s`", cmd)
		}
	}
	for _, e := range config.EnvVars {
		if !strings.Contains(readme, e) {
			t.Errorf("README does not document %s", e)
		}
	}
	if !strings.Contains(readme, "make dev") || !strings.Contains(readme, "make test") {
		t.Error("README lacks the two set-up commands")
	}
}
