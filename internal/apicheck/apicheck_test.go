// Package apicheck holds a test that the public packages' exported API is
// made of public types only, so an application in another module can use
// every exported identifier.
package apicheck

import (
	"bufio"
	"bytes"
	"fmt"
	"go/importer"
	"go/token"
	"go/types"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// public lists the packages an application imports.
var public = []string{"cache", "config", "events", "ratelimit", "scheduler", "session", "tasks", "worker"}

const module = "github.com/cachekeeper/cachekeeper"

func TestPublicAPIUsesNoInternalType(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the public packages' export data with go list")
	}
	imp := exportImporter(t)
	for _, name := range public {
		pkg, err := imp.Import(module + "/" + name)
		if err != nil {
			t.Fatalf("import %s: %v", name, err)
		}
		for _, leak := range internalLeaks(pkg) {
			t.Errorf("%s", leak)
		}
	}
}

// internalLeaks lists the exported identifiers of pkg (functions, variables,
// constants, types, exported fields and methods) whose type names a type
// of an internal package.
func internalLeaks(pkg *types.Package) []string {
	var out []string
	check := func(what string, t types.Type) {
		if s := types.TypeString(t, nil); strings.Contains(s, module+"/internal/") {
			out = append(out, what+": "+s)
		}
	}
	sc := pkg.Scope()
	for _, n := range sc.Names() {
		o := sc.Lookup(n)
		if !o.Exported() {
			continue
		}
		what := pkg.Name() + "." + n
		tn, isType := o.(*types.TypeName)
		if !isType {
			check(what, o.Type())
			continue
		}
		named, ok := tn.Type().(*types.Named)
		if !ok {
			check(what, tn.Type().Underlying())
			continue
		}
		for i := 0; i < named.NumMethods(); i++ {
			if m := named.Method(i); m.Exported() {
				check(what+"."+m.Name(), m.Type())
			}
		}
		switch u := named.Underlying().(type) {
		case *types.Struct:
			for i := 0; i < u.NumFields(); i++ {
				if f := u.Field(i); f.Exported() {
					check(what+"."+f.Name(), f.Type())
				}
			}
		case *types.Interface:
			for i := 0; i < u.NumMethods(); i++ {
				if m := u.Method(i); m.Exported() {
					check(what+"."+m.Name(), m.Type())
				}
			}
		default:
			check(what, u)
		}
	}
	return out
}

// exportImporter imports packages from the compiler's export data, which
// `go list -export` builds (or finds in the build cache): much quicker than
// type-checking every dependency from source.
func exportImporter(t *testing.T) types.Importer {
	t.Helper()
	args := []string{"list", "-export", "-deps", "-f", "{{.ImportPath}}={{.Export}}"}
	for _, p := range public {
		args = append(args, module+"/"+p)
	}
	cmd := exec.Command("go", args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list -export: %v\n%s", err, stderr.String())
	}
	exports := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		if path, file, ok := strings.Cut(sc.Text(), "="); ok && file != "" {
			exports[path] = file
		}
	}
	return importer.ForCompiler(token.NewFileSet(), "gc", func(path string) (io.ReadCloser, error) {
		file, ok := exports[path]
		if !ok {
			return nil, fmt.Errorf("no export data for %s", path)
		}
		return os.Open(file)
	})
}
