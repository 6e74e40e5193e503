package config_test

import (
	"os"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/cachekeeper/cachekeeper/config"
)

// yamlPaths walks t by its yaml tags and returns every setting's path in the
// notation of docs/configuration.md: maps of sections are `<name>`, lists of
// sections `[]`. leaves are the settings a user writes; all adds the
// sections that hold them.
func yamlPaths(t reflect.Type, prefix string, leaves, all map[string]bool) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if prefix != "" {
		all[prefix] = true
	}
	switch {
	case t.Kind() == reflect.Struct && t.PkgPath() != "time":
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			if !f.IsExported() {
				continue
			}
			name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			if name == "-" {
				continue
			}
			if name == "" {
				name = strings.ToLower(f.Name)
			}
			p := name
			if prefix != "" {
				p = prefix + "." + name
			}
			yamlPaths(f.Type, p, leaves, all)
		}
	case t.Kind() == reflect.Map && isSection(t.Elem()):
		yamlPaths(t.Elem(), prefix+".<name>", leaves, all)
	case t.Kind() == reflect.Slice && isSection(t.Elem()):
		yamlPaths(t.Elem(), prefix+"[]", leaves, all)
	default:
		leaves[prefix] = true
	}
}

func isSection(t reflect.Type) bool {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	return t.Kind() == reflect.Struct && t.PkgPath() != "time"
}

// docsSettings returns the first cell of every table row of the reference
// whose first cell is a setting in backquotes.
func docsSettings(t *testing.T, doc string) map[string]int {
	t.Helper()
	row := regexp.MustCompile("(?m)^\\| `([a-z_<>\\[\\].]+)` \\|")
	got := map[string]int{}
	for _, m := range row.FindAllStringSubmatch(doc, -1) {
		got[m[1]]++
	}
	return got
}

// docs/configuration.md documents every YAML setting of config.Config and
// nothing that does not exist.
func TestConfigurationReferenceMatchesTheConfig(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile("../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	leaves, all := map[string]bool{}, map[string]bool{}
	yamlPaths(reflect.TypeOf(config.Config{}), "", leaves, all)
	documented := docsSettings(t, doc)
	t.Logf("%d settings in config.Config, %d table rows in docs/configuration.md", len(leaves), len(documented))
	var missing, unknown, twice []string
	for p := range leaves {
		if documented[p] == 0 {
			missing = append(missing, p)
		}
	}
	for p, n := range documented {
		if strings.HasPrefix(p, "cachekeeper_") {
			continue // environment variable rows
		}
		if !all[p] {
			unknown = append(unknown, p)
		}
		if n > 1 {
			twice = append(twice, p)
		}
	}
	sort.Strings(missing)
	sort.Strings(unknown)
	sort.Strings(twice)
	if len(missing) > 0 {
		t.Errorf("docs/configuration.md lacks a row for: %s", strings.Join(missing, ", "))
	}
	if len(unknown) > 0 {
		t.Errorf("docs/configuration.md documents settings config.Config does not have: %s", strings.Join(unknown, ", "))
	}
	if len(twice) > 0 {
		t.Errorf("docs/configuration.md documents these twice: %s", strings.Join(twice, ", "))
	}
	for _, e := range config.EnvVars {
		if !strings.Contains(doc, "`"+e+"`") {
			t.Errorf("docs/configuration.md does not document %s", e)
		}
	}
}
