package testenv

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// DebianPython is the interpreter the Python package's tests use: Debian's,
// which sees the python3-redis package (a python3 earlier on PATH, such as
// pyenv's, may not).
const DebianPython = "/usr/bin/python3"

// Python returns DebianPython and the source directory of the Python package
// (clients/python/src), for tests that run both sides of a wire format. It
// fails the test under CI and skips it elsewhere when the interpreter or
// redis-py is missing (apt-get install python3-redis).
func Python(t testing.TB) (bin, src string) {
	t.Helper()
	root := moduleRoot(t)
	src = filepath.Join(root, "clients", "python", "src")
	if _, err := os.Stat(filepath.Join(src, "cachekeeper", "__init__.py")); err != nil {
		t.Fatalf("testenv: the Python package is not at %s: %v", src, err)
	}
	if _, err := os.Stat(DebianPython); err != nil {
		unavailable(t, "%s is missing (apt-get install python3 python3-redis)", DebianPython)
	}
	if out, err := exec.Command(DebianPython, "-c", "import redis").CombinedOutput(); err != nil {
		unavailable(t, "%s cannot import redis (apt-get install python3-redis): %s", DebianPython, out)
	}
	return DebianPython, src
}

// RunPython runs code with DebianPython, the package importable, stdin as
// its input, and returns its standard output; it fails the test when the
// script fails or runs longer than a minute.
func RunPython(t testing.TB, code string, stdin []byte) []byte {
	t.Helper()
	bin, src := Python(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "-c", code)
	cmd.Env = append(os.Environ(), "PYTHONPATH="+src, "PYTHONDONTWRITEBYTECODE=1")
	cmd.Stdin = bytes.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("python: %v\n%s", err, stderr.String())
	}
	return stdout.Bytes()
}

// moduleRoot is the directory of the go.mod above the working directory.
func moduleRoot(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("testenv: no go.mod above the working directory")
		}
		dir = parent
	}
}
