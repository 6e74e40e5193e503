package config

import (
	"io"
	"net/url"
	"regexp"
	"strings"
)

// Redaction replaces secrets in printed output.
const Redaction = "xxxxx"

// Secrets are recognised in any text, parsed or not, so that a URL that
// does not parse (a bad port, a bad %-escape) is redacted inside the very
// error message that says so:
var (
	// scheme://user:password@ (the password runs to the last '@' before
	// the next space or quote: an unescaped '@' in a password is common).
	urlPassword = regexp.MustCompile(`([A-Za-z][A-Za-z0-9+.\-]*://[^:/@\s"'<>\[]*):([^\s"'<>]*)@`)
	// user:password@ without a scheme: a MySQL DSN (user:password@tcp(host)/db)
	// or a URL whose scheme was left out.
	dsnPassword = regexp.MustCompile(`(^|[\s"'(=/@])([^:@/\s"'(\[]*):([^\s"'/][^\s"']*)@`)
	// password=... in a key=value connection string or a URL query.
	kvPassword = regexp.MustCompile(`(?i)((?:^|[\s?&;"'])(?:password|passwd|pwd|sslpassword)=)('[^']*'|[^\s&;"']*)`)
)

// RedactURL hides the password of a URL, of a MySQL-style DSN
// (user:password@tcp(host)/db) or of a key=value connection string
// (password=...). It works on strings that do not parse, and on text that
// merely contains them (see Redact): what stands between the user info's
// first ':' and the last '@' goes too, however broken the rest.
func RedactURL(s string) string { return RedactText(s, passwordsOf(s)...) }

// Redact replaces every password it recognises in s (URL user info, DSN,
// password=...) with Redaction, leaving the rest as it is.
func Redact(s string) string {
	if s == "" {
		return s
	}
	s = urlPassword.ReplaceAllString(s, "${1}:"+Redaction+"@")
	s = dsnPassword.ReplaceAllString(s, "${1}${2}:"+Redaction+"@")
	return kvPassword.ReplaceAllString(s, "${1}"+Redaction)
}

// RedactError renders err with every password removed: those Redact
// recognises, and the passwords of sources (the URLs or DSNs the error may
// be about) wherever they appear, raw or %-decoded, so that a library error
// quoting part of a URL leaks nothing either.
func RedactError(err error, sources ...string) string {
	if err == nil {
		return ""
	}
	var secrets []string
	for _, src := range sources {
		secrets = append(secrets, passwordsOf(src)...)
	}
	return RedactText(err.Error(), secrets...)
}

// RedactText is Redact plus the removal of each literal secret.
func RedactText(s string, secrets ...string) string {
	for _, secret := range secrets {
		if len(secret) >= 3 { // shorter strings would mangle ordinary words
			s = strings.ReplaceAll(s, secret, Redaction)
		}
	}
	return Redact(s)
}

// Secrets returns the passwords of this configuration (in its URLs and
// password fields), raw and %-decoded, for RedactText.
func (c Config) Secrets() []string {
	var out []string
	for _, u := range []string{c.Redis.URL, c.Database.URL} {
		out = append(out, passwordsOf(u)...)
	}
	for _, p := range []string{c.Redis.Password, sentinelPassword(c.Redis.Sentinel)} {
		if p != "" {
			out = append(out, p)
		}
	}
	return out
}

func sentinelPassword(s *SentinelConfig) string {
	if s == nil {
		return ""
	}
	return s.Password
}

// RedactingWriter returns a writer that passes each Write to w with the
// passwords Redact recognises and the literal secrets removed. A log
// handler writes one record per Write, so no secret is split.
func RedactingWriter(w io.Writer, secrets ...string) io.Writer {
	return &redactingWriter{w: w, secrets: secrets}
}

type redactingWriter struct {
	w       io.Writer
	secrets []string
}

func (r *redactingWriter) Write(p []byte) (int, error) {
	if _, err := io.WriteString(r.w, RedactText(string(p), r.secrets...)); err != nil {
		return 0, err
	}
	return len(p), nil
}

// passwordsOf returns the password of a URL or DSN, as written and decoded.
func passwordsOf(src string) []string {
	var out []string
	add := func(p string) {
		if p == "" || p == Redaction {
			return
		}
		out = append(out, p)
		if d, err := url.PathUnescape(p); err == nil && d != p {
			out = append(out, d)
		}
		if d, err := url.QueryUnescape(p); err == nil && d != p {
			out = append(out, d)
		}
	}
	for _, m := range urlPassword.FindAllStringSubmatch(src, -1) {
		add(m[2])
	}
	for _, m := range dsnPassword.FindAllStringSubmatch(src, -1) {
		add(m[3])
	}
	for _, m := range kvPassword.FindAllStringSubmatch(src, -1) {
		add(strings.Trim(m[2], "'"))
	}
	// Whatever the patterns made of it, the text between the user info's
	// first ':' and the last '@' is a password in any URL or DSN, however
	// broken ("://[:pw@", "@user:pw@"): a literal secret of the source.
	if at := strings.LastIndexByte(src, '@'); at > 0 {
		info := src[:at]
		if i := strings.LastIndex(info, "//"); i >= 0 {
			info = info[i+2:]
		}
		if _, pw, ok := strings.Cut(info, ":"); ok {
			add(pw)
		}
	}
	return out
}
