package config

import (
	"fmt"
	"reflect"
	"regexp"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"
)

// unknownField looks for a mapping key the configuration has no setting for
// and describes the first one by its YAML path, its line and the closest
// setting of the same section: `caches.user.ttl_jiter (line 4) is not a
// setting; did you mean ttl_jitter?`. yaml.v3's own message names a Go type
// instead (`field ttl_jiter not found in type config.CacheSpec`). It returns
// "" when every key is known (or the document is not one mapping).
func unknownField(doc *yaml.Node) string {
	if doc.Kind == yaml.DocumentNode && len(doc.Content) == 1 {
		doc = doc.Content[0]
	}
	return checkNode(doc, reflect.TypeOf(Config{}), "")
}

var unmarshalerType = reflect.TypeOf((*yaml.Unmarshaler)(nil)).Elem()

func checkNode(n *yaml.Node, t reflect.Type, path string) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	switch {
	case t.Kind() == reflect.Struct && n.Kind == yaml.MappingNode && !reflect.PointerTo(t).Implements(unmarshalerType):
		fields := yamlFields(t)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if k.Value == "<<" {
				continue // a merge key: its mapping is checked where it is defined
			}
			ft, ok := fields[k.Value]
			if !ok {
				msg := fmt.Sprintf("%s (line %d) is not a setting", join(path, k.Value), k.Line)
				if now, ok := renamed[k.Value]; ok {
					return msg + "; it was replaced by " + now
				}
				if s := closest(k.Value, fields); s != "" {
					return msg + "; did you mean " + s + "?"
				}
				return msg + " (settings here: " + strings.Join(fieldNames(fields), ", ") + ")"
			}
			if m := checkNode(v, ft, join(path, k.Value)); m != "" {
				return m
			}
		}
	case t.Kind() == reflect.Map && n.Kind == yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			if m := checkNode(n.Content[i+1], t.Elem(), join(path, n.Content[i].Value)); m != "" {
				return m
			}
		}
	case t.Kind() == reflect.Slice && n.Kind == yaml.SequenceNode:
		for i, c := range n.Content {
			if m := checkNode(c, t.Elem(), fmt.Sprintf("%s[%d]", path, i)); m != "" {
				return m
			}
		}
	case t.Kind() == reflect.Slice && n.Kind == yaml.MappingNode:
		// One mapping where a list is accepted too (caches.*.changes).
		return checkNode(n, t.Elem(), path)
	}
	return ""
}

// yamlFields maps the YAML names of t's fields to their types.
func yamlFields(t reflect.Type) map[string]reflect.Type {
	out := map[string]reflect.Type{}
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
		out[name] = f.Type
	}
	return out
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// closest is the setting nearest to name by edit distance, if near enough
// to be a typo.
func closest(name string, fields map[string]reflect.Type) string {
	best, bestD := "", len(name)/3+2
	for _, f := range fieldNames(fields) {
		if d := editDistance(name, f); d < bestD {
			best, bestD = f, d
		}
	}
	return best
}

func fieldNames(m map[string]reflect.Type) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// editDistance is the optimal string alignment distance: insertions,
// deletions, substitutions and transpositions of adjacent letters (the
// commonest typo: ulr for url) each cost one.
func editDistance(a, b string) int {
	d := make([][]int, len(a)+1)
	for i := range d {
		d[i] = make([]int, len(b)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(a); i++ {
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(a)][len(b)]
}

var syntaxLine = regexp.MustCompile(`^yaml: line \d+: `)

// syntaxError rewrites a YAML syntax error to name the line where the
// document stops being YAML. yaml.v3 reports a parser error at the line
// before the construct it was reading (`key: [1h` on line 4 is reported at
// line 3), and some scanner errors at the line where the token began; the
// first line whose prefix of the document no longer parses is the one to
// fix.
func syntaxError(data []byte, err error) string {
	msg := err.Error()
	if !syntaxLine.MatchString(msg) {
		return oneLine(err)
	}
	what := syntaxLine.ReplaceAllString(msg, "")
	lines := strings.SplitAfter(string(data), "\n")
	var probe yaml.Node
	for k := 1; k <= len(lines); k++ {
		if yaml.Unmarshal([]byte(strings.Join(lines[:k], "")), &probe) != nil {
			return fmt.Sprintf("line %d: %s (not valid YAML: %s)", k, strings.TrimRight(strings.TrimSpace(lines[k-1]), "\n"), what)
		}
	}
	return oneLine(err)
}
