// Package apicheck holds a test that the public packages' exported API is
// made of public types only, so an application in another module can use
// every exported identifier.
package apicheck

import (
	"go/importer"
	"go/token"
	"go/types"
	"strings"
	"testing"
)

// public lists the packages an application imports.
var public = []string{"config", "events", "ratelimit", "scheduler", "session", "tasks", "worker"}

const module = "github.com/cachekeeper/cachekeeper"

func TestPublicAPIUsesNoInternalType(t *testing.T) {
	if testing.Short() {
		t.Skip("type-checks the public packages from source")
	}
	imp := importer.ForCompiler(token.NewFileSet(), "source", nil)
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
