package dashboard_test

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/timq/timq/internal/dashboard"
)

func TestAuthMiddleware(t *testing.T) {
	t.Parallel()
	ok := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "in") })
	basic := func(u, p string) string {
		r, _ := http.NewRequest("GET", "/", nil)
		r.SetBasicAuth(u, p)
		return r.Header.Get("Authorization")
	}
	both := dashboard.Auth{User: "ops", Password: "pass word", Token: "tok-123"}
	tests := []struct {
		name      string
		auth      dashboard.Auth
		header    string
		want      int
		challenge string
	}{
		{"no credentials configured lets in", dashboard.Auth{}, "", 200, ""},
		{"basic: none sent", dashboard.Auth{User: "ops", Password: "pw"}, "", 401, `Basic realm="timq dashboard", charset="UTF-8"`},
		{"basic: right", dashboard.Auth{User: "ops", Password: "pw"}, basic("ops", "pw"), 200, ""},
		{"basic: wrong password", dashboard.Auth{User: "ops", Password: "pw"}, basic("ops", "pW"), 401, "Basic"},
		{"basic: wrong user", dashboard.Auth{User: "ops", Password: "pw"}, basic("op", "pw"), 401, "Basic"},
		{"basic: password prefix", dashboard.Auth{User: "ops", Password: "pw"}, basic("ops", "p"), 401, "Basic"},
		{"basic: empty password", dashboard.Auth{User: "ops", Password: "pw"}, basic("ops", ""), 401, "Basic"},
		{"basic: a token is not a password", dashboard.Auth{User: "ops", Password: "pw"}, "Bearer pw", 401, "Basic"},
		{"token: right", dashboard.Auth{Token: "tok-123"}, "Bearer tok-123", 200, ""},
		{"token: scheme in any case", dashboard.Auth{Token: "tok-123"}, "bearer tok-123", 200, ""},
		{"token: wrong", dashboard.Auth{Token: "tok-123"}, "Bearer tok-124", 401, `Bearer realm="timq dashboard"`},
		{"token: none sent", dashboard.Auth{Token: "tok-123"}, "", 401, "Bearer"},
		{"token: basic is refused", dashboard.Auth{Token: "tok-123"}, basic("x", "tok-123"), 401, "Bearer"},
		{"both: basic", both, basic("ops", "pass word"), 200, ""},
		{"both: token", both, "Bearer tok-123", 200, ""},
		{"both: wrong token", both, "Bearer nope", 401, "Basic"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rec := httptest.NewRecorder()
			req := httptest.NewRequest("GET", "/api/queues", nil)
			if tt.header != "" {
				req.Header.Set("Authorization", tt.header)
			}
			tt.auth.Middleware(ok).ServeHTTP(rec, req)
			if rec.Code != tt.want {
				t.Fatalf("status %d, want %d", rec.Code, tt.want)
			}
			if got := rec.Header().Get("WWW-Authenticate"); !strings.HasPrefix(got, tt.challenge) || (tt.challenge == "") != (got == "") {
				t.Errorf("WWW-Authenticate = %q, want %q", got, tt.challenge)
			}
			if tt.want == 401 && strings.Contains(rec.Body.String(), "in") && !strings.Contains(rec.Body.String(), "unauthorized") {
				t.Errorf("refused request reached the handler: %q", rec.Body.String())
			}
		})
	}
}

func TestCheckAddr(t *testing.T) {
	t.Parallel()
	creds := dashboard.Auth{User: "u", Password: "p"}
	tests := []struct {
		addr    string
		auth    dashboard.Auth
		refused bool
	}{
		{"127.0.0.1:8080", dashboard.Auth{}, false},
		{"127.8.9.1:8080", dashboard.Auth{}, false},
		{"localhost:8080", dashboard.Auth{}, false},
		{"[::1]:8080", dashboard.Auth{}, false},
		{"0.0.0.0:8080", dashboard.Auth{}, true},
		{":8080", dashboard.Auth{}, true},
		{"[::]:8080", dashboard.Auth{}, true},
		{"10.1.2.3:8080", dashboard.Auth{}, true},
		{"dash.internal:8080", dashboard.Auth{}, true},
		{"0.0.0.0:8080", creds, false},
		{":8080", dashboard.Auth{Token: "t"}, false},
	}
	for _, tt := range tests {
		err := dashboard.CheckAddr(tt.addr, tt.auth)
		if (err != nil) != tt.refused {
			t.Errorf("CheckAddr(%q, %v) = %v, want refused=%v", tt.addr, tt.auth, err, tt.refused)
		}
		if err != nil {
			if !errors.Is(err, dashboard.ErrNoCredentials) || strings.Contains(err.Error(), "\n") ||
				!strings.Contains(err.Error(), dashboard.EnvUser) || !strings.Contains(err.Error(), dashboard.EnvToken) {
				t.Errorf("CheckAddr(%q) error %q: want one line naming the settings", tt.addr, err)
			}
		}
	}
	if err := dashboard.CheckAddr("8080", creds); err == nil {
		t.Error("CheckAddr without a port separator: no error")
	}
}

func TestAuthFromEnvAndRedaction(t *testing.T) {
	t.Parallel()
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
	a, err := dashboard.AuthFromEnv(env(map[string]string{dashboard.EnvUser: "ops", dashboard.EnvPassword: "s3cr3t-pw", dashboard.EnvToken: " tok-s3cr3t "}))
	if err != nil {
		t.Fatal(err)
	}
	if a.User != "ops" || a.Password != "s3cr3t-pw" || a.Token != "tok-s3cr3t" {
		t.Errorf("AuthFromEnv = %+v", a)
	}
	for _, s := range []string{a.String(), fmt.Sprint(a), fmt.Sprintf("%v", a), a.LogValue().String()} {
		if strings.Contains(s, "s3cr3t") {
			t.Errorf("printed Auth shows a secret: %q", s)
		}
	}
	if _, err := dashboard.AuthFromEnv(env(map[string]string{dashboard.EnvUser: "ops"})); err == nil {
		t.Error("user without password: no error")
	}
	if _, err := dashboard.AuthFromEnv(env(map[string]string{dashboard.EnvPassword: "pw"})); err == nil {
		t.Error("password without user: no error")
	}
	if a, err := dashboard.AuthFromEnv(env(nil)); err != nil || a.Configured() {
		t.Errorf("empty env = %+v, %v; want no credentials and no error", a, err)
	}
}
