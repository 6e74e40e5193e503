package keys

import "fmt"

// ParseSingle parses a key template that must hold exactly one placeholder
// (possibly repeated), such as "session:{token}" or "rate_limit:{client}".
// what names the setting in the error, for example "sessions.key".
func ParseSingle(what, s string) (Template, error) {
	t, err := ParseTemplate(s)
	if err != nil {
		return Template{}, fmt.Errorf("%s: %w", what, err)
	}
	first := t.Placeholders()[0]
	for _, name := range t.Placeholders() {
		if name != first {
			return Template{}, fmt.Errorf("%s: key template %q must have one placeholder, has {%s} and {%s}", what, s, first, name)
		}
	}
	return t, nil
}

// SessionLayout names the keys of an application's sessions: one hash per
// session ("session:{token}") and, optionally, one set of tokens per user
// ("user:{user_id}:sessions").
type SessionLayout struct {
	session Template
	index   Template // zero when the application keeps no index
}

// NewSessionLayout parses the session key template and the index template
// ("" when there is no index). Each must have exactly one placeholder.
func NewSessionLayout(session, index string) (SessionLayout, error) {
	var l SessionLayout
	var err error
	if l.session, err = ParseSingle("sessions.key", session); err != nil {
		return SessionLayout{}, err
	}
	if index != "" {
		if l.index, err = ParseSingle("sessions.index", index); err != nil {
			return SessionLayout{}, err
		}
	}
	return l, nil
}

// Session is the key of the session with token.
func (l SessionLayout) Session(token string) string { return l.session.RenderOne(token) }

// SessionPattern is the SCAN MATCH glob of every session key.
func (l SessionLayout) SessionPattern() string { return l.session.Pattern() }

// Token extracts the token from a session key.
func (l SessionLayout) Token(key string) (string, bool) {
	m, ok := l.session.Match(key)
	if !ok {
		return "", false
	}
	return m[l.session.Placeholders()[0]], true
}

// HasIndex reports whether the layout has per-user index sets.
func (l SessionLayout) HasIndex() bool { return !l.index.IsZero() }

// Index is the key of userID's index set, "" when the layout has none.
func (l SessionLayout) Index(userID string) string {
	if l.index.IsZero() {
		return ""
	}
	return l.index.RenderOne(userID)
}

// IndexPattern is the SCAN MATCH glob of every index set, "" when none.
func (l SessionLayout) IndexPattern() string {
	if l.index.IsZero() {
		return ""
	}
	return l.index.Pattern()
}

// UserID extracts the user id from an index key.
func (l SessionLayout) UserID(indexKey string) (string, bool) {
	if l.index.IsZero() {
		return "", false
	}
	m, ok := l.index.Match(indexKey)
	if !ok {
		return "", false
	}
	return m[l.index.Placeholders()[0]], true
}
