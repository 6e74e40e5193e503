package faults

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// binary is the cachekeeper binary built for the suite.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "ckfaults")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "cachekeeper")
	build := exec.Command("go", "build", "-o", binary, "github.com/cachekeeper/cachekeeper/cmd/cachekeeper")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build cachekeeper:", err)
		os.Exit(1)
	}
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}
