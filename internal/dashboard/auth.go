package dashboard

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
)

// Environment variables that hold the dashboard's credentials.
const (
	EnvUser     = "TIMQ_DASH_USER"
	EnvPassword = "TIMQ_DASH_PASSWORD"
	EnvToken    = "TIMQ_DASH_TOKEN"
)

// Realm is the realm of the dashboard's WWW-Authenticate challenge.
const Realm = "timq dashboard"

// Auth holds the credentials the dashboard accepts: HTTP basic auth with
// User and Password, a bearer token, or both. The zero Auth accepts every
// request, which CheckAddr allows only on a loopback address.
//
// Auth never prints its secrets: String and LogValue redact them.
type Auth struct {
	User, Password string
	Token          string
}

// AuthFromEnv reads TIMQ_DASH_USER, TIMQ_DASH_PASSWORD and TIMQ_DASH_TOKEN.
// It fails when only one of user and password is set.
func AuthFromEnv(getenv func(string) string) (Auth, error) {
	a := Auth{User: getenv(EnvUser), Password: getenv(EnvPassword), Token: strings.TrimSpace(getenv(EnvToken))}
	return a, a.Validate()
}

// Validate reports an Auth that is set up halfway: a user without a password
// or a password without a user.
func (a Auth) Validate() error {
	if (a.User == "") != (a.Password == "") {
		return fmt.Errorf("%s and %s: set both for basic auth, or neither", EnvUser, EnvPassword)
	}
	if strings.Contains(a.User, ":") {
		return fmt.Errorf("%s: must not contain a colon", EnvUser)
	}
	return nil
}

// Configured reports whether any credential is set.
func (a Auth) Configured() bool { return a.User != "" || a.Token != "" }

// String describes the Auth with its secrets redacted.
func (a Auth) String() string {
	var parts []string
	if a.User != "" {
		parts = append(parts, "basic (user "+a.User+")")
	}
	if a.Token != "" {
		parts = append(parts, "bearer token")
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, " or ")
}

// LogValue implements slog.LogValuer with the secrets redacted.
func (a Auth) LogValue() slog.Value { return slog.StringValue(a.String()) }

// equal compares two secrets in time that depends on neither's content nor
// length: both are hashed first, so ConstantTimeCompare sees equal lengths.
func equal(got, want string) bool {
	g, w := sha256.Sum256([]byte(got)), sha256.Sum256([]byte(want))
	return subtle.ConstantTimeCompare(g[:], w[:]) == 1
}

// allows reports whether r carries one of a's credentials. The user and the
// password are both compared whatever the outcome of the first, so the time
// taken does not tell which was wrong.
func (a Auth) allows(r *http.Request) bool {
	h := r.Header.Get("Authorization")
	if a.Token != "" {
		if scheme, tok, ok := strings.Cut(h, " "); ok && strings.EqualFold(scheme, "Bearer") {
			return equal(strings.TrimSpace(tok), a.Token)
		}
	}
	if a.User != "" {
		if user, pass, ok := r.BasicAuth(); ok {
			u, p := equal(user, a.User), equal(pass, a.Password)
			return u && p
		}
	}
	return false
}

// Middleware lets through requests that carry one of a's credentials and
// answers the others 401 with a challenge (Basic when a user is set, so
// browsers prompt for it; Bearer otherwise). The zero Auth lets every
// request through.
func (a Auth) Middleware(next http.Handler) http.Handler {
	if !a.Configured() {
		return next
	}
	challenge := `Bearer realm="` + Realm + `"`
	if a.User != "" {
		challenge = `Basic realm="` + Realm + `", charset="UTF-8"`
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !a.allows(r) {
			w.Header().Set("WWW-Authenticate", challenge)
			http.Error(w, "401 unauthorized: this dashboard needs credentials", http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// IsLoopback reports whether the host of a HOST:PORT address is a loopback
// address: localhost, 127.0.0.0/8 or ::1. An empty host (all interfaces)
// and other names are not.
func IsLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// ErrNoCredentials is returned (wrapped) by CheckAddr.
var ErrNoCredentials = errors.New("refusing to serve the dashboard without credentials")

// CheckAddr returns an error, one line naming the settings to set, when the
// dashboard would listen on addr without credentials and addr is not a
// loopback address (see IsLoopback): asynqmon can delete and re-run tasks,
// so it must not be open to the network.
func CheckAddr(addr string, a Auth) error {
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return fmt.Errorf("address %q: want HOST:PORT, e.g. 127.0.0.1:8080", addr)
	}
	if a.Configured() || IsLoopback(addr) {
		return nil
	}
	return fmt.Errorf("%w on %s: set %s and %s (basic auth) or %s (bearer token), or listen on 127.0.0.1",
		ErrNoCredentials, addr, EnvUser, EnvPassword, EnvToken)
}
