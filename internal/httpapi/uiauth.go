package httpapi

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
)

// Environment variables holding the web UI's login.
const (
	EnvUIUser     = "CACHEKEEPER_UI_USER"
	EnvUIPassword = "CACHEKEEPER_UI_PASSWORD"
)

// ErrUIExposed is returned by CheckUIExposure for a UI that anyone who
// reaches the port could use to delete and re-run jobs.
var ErrUIExposed = errors.New("web UI exposed without a login")

// Credentials are the one login of the web UI. Only SHA-256 digests are
// kept, compared in constant time.
type Credentials struct {
	user, pass [sha256.Size]byte
}

// LoadCredentials reads the UI login from the environment (EnvUIUser,
// default "admin", and EnvUIPassword) or, when file is set, from a file
// holding "user:password" on its first line. It returns nil when neither
// is set.
func LoadCredentials(env func(string) string, file string) (*Credentials, error) {
	user, pass := env(EnvUIUser), env(EnvUIPassword)
	if file != "" {
		if pass != "" {
			return nil, fmt.Errorf("worker.ui_auth_file and %s are both set; keep one", EnvUIPassword)
		}
		data, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("worker.ui_auth_file: %w", err)
		}
		line, _, _ := strings.Cut(string(data), "\n")
		var ok bool
		user, pass, ok = strings.Cut(strings.TrimRight(line, "\r"), ":")
		if !ok || user == "" || pass == "" {
			return nil, fmt.Errorf("worker.ui_auth_file %s must hold user:password on its first line", file)
		}
	}
	if pass == "" {
		if user != "" {
			return nil, fmt.Errorf("%s is set but %s is not; set both (or use worker.ui_auth_file)", EnvUIUser, EnvUIPassword)
		}
		return nil, nil
	}
	if user == "" {
		user = "admin"
	}
	if len(pass) < 12 {
		return nil, errors.New("the web UI password must be at least 12 characters")
	}
	return &Credentials{user: sha256.Sum256([]byte(user)), pass: sha256.Sum256([]byte(pass))}, nil
}

// Wrap requires the login on every request to h (HTTP basic auth).
func (c *Credentials) Wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user, pass, ok := r.BasicAuth()
		u, p := sha256.Sum256([]byte(user)), sha256.Sum256([]byte(pass))
		// Both comparisons always run: the time taken says nothing about
		// which part was wrong.
		match := subtle.ConstantTimeCompare(u[:], c.user[:]) & subtle.ConstantTimeCompare(p[:], c.pass[:])
		if !ok || match != 1 {
			w.Header().Set("WWW-Authenticate", `Basic realm="cachekeeper", charset="UTF-8"`)
			http.Error(w, "login required", http.StatusUnauthorized)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// Loopback reports whether addr (host:port, as for net.Listen) listens on
// the loopback interface only. An empty host (":9090"), 0.0.0.0, :: and
// any other name or address are not loopback.
func Loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// CheckUIExposure refuses a job-changing UI served on a non-loopback
// address without a login, saying how to fix it. A read-only UI, a UI with
// creds, or one on a loopback address is accepted.
func CheckUIExposure(addr string, readOnly bool, creds *Credentials) error {
	if readOnly || creds != nil || Loopback(addr) {
		return nil
	}
	return fmt.Errorf("%w: worker.ui serves asynqmon, which can delete, archive and re-run every job, on %s, reachable beyond this host, without a login; "+
		"set %s (and %s, default admin) or worker.ui_auth_file, or set worker.ui_read_only: true, or serve it on a loopback address (worker.metrics_addr: 127.0.0.1:9090)",
		ErrUIExposed, addr, EnvUIPassword, EnvUIUser)
}
