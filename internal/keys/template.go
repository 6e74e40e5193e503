package keys

import (
	"fmt"
	"strings"
)

// Template is a key pattern with named placeholders, such as "user:{id}" or
// "user:{user_id}:sessions". A literal brace is written "{{" or "}}".
type Template struct {
	raw   string
	parts []part
}

type part struct {
	literal string
	name    string // placeholder when non-empty
}

// ParseTemplate parses a key template. It must hold at least one placeholder.
func ParseTemplate(s string) (Template, error) {
	t := Template{raw: s}
	var lit strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '{' && i+1 < len(s) && s[i+1] == '{':
			lit.WriteByte('{')
			i++
		case c == '}' && i+1 < len(s) && s[i+1] == '}':
			lit.WriteByte('}')
			i++
		case c == '{':
			end := strings.IndexByte(s[i+1:], '}')
			if end < 0 {
				return Template{}, fmt.Errorf("key template %q: '{' at byte %d is never closed", s, i)
			}
			name := s[i+1 : i+1+end]
			if !validName(name) {
				return Template{}, fmt.Errorf("key template %q: placeholder {%s} must be a column name (letters, digits, _)", s, name)
			}
			if lit.Len() > 0 {
				t.parts = append(t.parts, part{literal: lit.String()})
				lit.Reset()
			}
			t.parts = append(t.parts, part{name: name})
			i += end + 1
		case c == '}':
			return Template{}, fmt.Errorf("key template %q: '}' at byte %d has no '{' (write }} for a literal brace)", s, i)
		case c == '*' || c == '?' || c == '[':
			return Template{}, fmt.Errorf("key template %q: glob character %q is not allowed in a key", s, c)
		default:
			lit.WriteByte(c)
		}
	}
	if lit.Len() > 0 {
		t.parts = append(t.parts, part{literal: lit.String()})
	}
	if len(t.Placeholders()) == 0 {
		return Template{}, fmt.Errorf("key template %q has no placeholder such as {id}", s)
	}
	return t, nil
}

// MustParseTemplate is ParseTemplate for constants known to be valid.
func MustParseTemplate(s string) Template {
	t, err := ParseTemplate(s)
	if err != nil {
		panic(err)
	}
	return t
}

func validName(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if !(r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9') {
			return false
		}
	}
	return true
}

// String returns the template as written.
func (t Template) String() string { return t.raw }

// IsZero reports whether t was never parsed.
func (t Template) IsZero() bool { return len(t.parts) == 0 }

// Placeholders returns the placeholder names in order of appearance.
func (t Template) Placeholders() []string {
	var out []string
	for _, p := range t.parts {
		if p.name != "" {
			out = append(out, p.name)
		}
	}
	return out
}

// Render fills the placeholders with values from lookup. A placeholder that
// lookup does not know is an error.
func (t Template) Render(lookup func(name string) (string, bool)) (string, error) {
	var b strings.Builder
	for _, p := range t.parts {
		if p.name == "" {
			b.WriteString(p.literal)
			continue
		}
		v, ok := lookup(p.name)
		if !ok {
			return "", fmt.Errorf("key template %q: no value for {%s}", t.raw, p.name)
		}
		b.WriteString(v)
	}
	return b.String(), nil
}

// RenderMap fills the placeholders from a map.
func (t Template) RenderMap(values map[string]string) (string, error) {
	return t.Render(func(n string) (string, bool) { v, ok := values[n]; return v, ok })
}

// RenderOne fills every placeholder with the same value: the usual case of a
// single-placeholder template such as "user:{id}".
func (t Template) RenderOne(value string) string {
	var b strings.Builder
	for _, p := range t.parts {
		if p.name == "" {
			b.WriteString(p.literal)
		} else {
			b.WriteString(value)
		}
	}
	return b.String()
}

// LiteralPrefix is the literal text every key of the template starts with
// (up to its first placeholder).
func (t Template) LiteralPrefix() string {
	if len(t.parts) == 0 || t.parts[0].name != "" {
		return ""
	}
	return t.parts[0].literal
}

// MayMatchGlob reports whether some key could match both the template and
// the SCAN MATCH glob. It compares their literal prefixes (and, for a glob
// without wildcards, matches the one key it names), so it may answer true
// for a pair with no common key, never false for a pair with one.
func (t Template) MayMatchGlob(glob string) bool {
	gp, exact := GlobPrefix(glob)
	if exact {
		_, ok := t.Match(gp)
		return ok
	}
	tp := t.LiteralPrefix()
	return strings.HasPrefix(gp, tp) || strings.HasPrefix(tp, gp)
}

// Pattern returns the SCAN MATCH glob for every key of the template:
// placeholders become '*' and glob characters in literals are escaped.
func (t Template) Pattern() string {
	var b strings.Builder
	for _, p := range t.parts {
		if p.name != "" {
			b.WriteByte('*')
			continue
		}
		for i := 0; i < len(p.literal); i++ {
			c := p.literal[i]
			if c == '*' || c == '?' || c == '[' || c == ']' || c == '\\' {
				b.WriteByte('\\')
			}
			b.WriteByte(c)
		}
	}
	return b.String()
}

// Match extracts the placeholder values from a key of this template. The
// last placeholder may hold separators; earlier ones end at the next literal.
func (t Template) Match(key string) (map[string]string, bool) {
	out := make(map[string]string, 2)
	rest := key
	for i, p := range t.parts {
		if p.name == "" {
			if !strings.HasPrefix(rest, p.literal) {
				return nil, false
			}
			rest = rest[len(p.literal):]
			continue
		}
		if i+1 == len(t.parts) {
			if rest == "" {
				return nil, false
			}
			out[p.name] = rest
			rest = ""
			continue
		}
		next := t.parts[i+1].literal
		j := strings.Index(rest, next)
		if j <= 0 {
			return nil, false
		}
		out[p.name] = rest[:j]
		rest = rest[j:]
	}
	if rest != "" {
		return nil, false
	}
	return out, true
}
