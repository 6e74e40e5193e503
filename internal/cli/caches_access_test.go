package cli_test

import (
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/cachekeeper/cachekeeper/internal/testenv"
)

// The cachekeeper page is on every worker's HTTP server: open and read-only
// with the UI off; with the UI and its login, behind that login and with
// the dead-letter forms.
func TestCachesPageAccess(t *testing.T) {
	t.Parallel()
	r := testenv.NewRedis(t).URL
	hc := &http.Client{Timeout: 10 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	do := func(method, u, user, pass string) (int, string) {
		t.Helper()
		var body io.Reader
		if method == http.MethodPost {
			body = strings.NewReader(url.Values{"record": {"x"}}.Encode())
		}
		req, err := http.NewRequest(method, u, body)
		if err != nil {
			t.Fatal(err)
		}
		if body != nil {
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		}
		if user != "" {
			req.SetBasicAuth(user, pass)
		}
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}

	t.Run("ui off", func(t *testing.T) {
		base := startWorker(t, map[string]string{"CACHEKEEPER_REDIS_URL": r})
		code, body := do("GET", base+"/caches", "", "")
		if code != http.StatusOK || strings.Contains(body, "<form") || !strings.Contains(body, "asynqmon is off") {
			t.Fatalf("GET /caches with the UI off = %d, want the read-only page without forms: %.300q", code, body)
		}
		if code, body := do("GET", base+"/caches.json", "", ""); code != http.StatusOK || !strings.Contains(body, `"read_only":true`) {
			t.Errorf("GET /caches.json = %d %.200q", code, body)
		}
		if code, _ := do("POST", base+"/caches/dead/purge", "", ""); code != http.StatusForbidden {
			t.Errorf("POST purge with the UI off = %d, want 403", code)
		}
	})

	t.Run("ui with login", func(t *testing.T) {
		env := map[string]string{"CACHEKEEPER_REDIS_URL": r, "CACHEKEEPER_UI_USER": "ops", "CACHEKEEPER_UI_PASSWORD": "correct horse battery"}
		base := startWorker(t, env, "--ui")
		for _, p := range []string{"/caches", "/caches.json"} {
			if code, _ := do("GET", base+p, "", ""); code != http.StatusUnauthorized {
				t.Errorf("GET %s without the login = %d, want 401", p, code)
			}
		}
		if code, _ := do("POST", base+"/caches/dead/purge", "", ""); code != http.StatusUnauthorized {
			t.Errorf("POST purge without the login = %d, want 401", code)
		}
		code, body := do("GET", base+"/caches", "ops", "correct horse battery")
		if code != http.StatusOK || !strings.Contains(body, `href="/ui/"`) || strings.Contains(body, "read-only") {
			t.Errorf("GET /caches with the login = %d %.300q, want the page linking to /ui/, not read-only", code, body)
		}
		// A record no longer in the list: the action ran and said so.
		if code, _ := do("POST", base+"/caches/dead/purge", "ops", "correct horse battery"); code != http.StatusConflict {
			t.Errorf("POST purge of an unknown record with the login = %d, want 409", code)
		}
	})
}
