package chatapi

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Defaults applied by New to zero Config fields.
const (
	// DefaultAdmin is the app admin account the client signs as.
	DefaultAdmin = "administrator"
	// DefaultTimeout bounds one HTTP attempt. It is longer than the 3 s
	// after which Tencent's server gives up, so the client sees the
	// server's own answer rather than cutting it off.
	DefaultTimeout = 10 * time.Second
	// DefaultMaxConns caps the client's connections to the API: far more
	// than the 200 calls per second each endpoint allows keep busy at
	// Tencent's latency.
	DefaultMaxConns = 1024
	// DefaultSigTTL is the lifetime of each UserSig the client makes.
	DefaultSigTTL = 24 * time.Hour
	// MinSigTTL is the shortest SigTTL New accepts.
	MinSigTTL = time.Minute
	// DefaultMaxResponseBytes caps how much of an answer the client reads.
	DefaultMaxResponseBytes int64 = 1 << 20
)

// regionHosts maps a Config.Region to its REST API base URL.
var regionHosts = map[string]string{
	"cn":  "https://console.tim.qq.com",
	"sgp": "https://adminapisgp.im.qcloud.com",
	"kr":  "https://adminapikr.im.qcloud.com",
	"jpn": "https://adminapijpn.im.qcloud.com",
	"ger": "https://adminapiger.im.qcloud.com",
	"usa": "https://adminapiusa.im.qcloud.com",
	"idn": "https://adminapiidn.im.qcloud.com",
	"ind": "https://adminapiind.im.qcloud.com",
}

// Regions lists the names Config.Region accepts, sorted.
var Regions = []string{"cn", "ger", "idn", "ind", "jpn", "kr", "sgp", "usa"}

// RegionBaseURL returns the REST API base URL (scheme and host, no trailing
// slash) of a region name from Regions, or an error naming the valid ones.
func RegionBaseURL(region string) (string, error) {
	if u, ok := regionHosts[region]; ok {
		return u, nil
	}
	return "", fmt.Errorf("unknown region %q (want %s)", region, strings.Join(Regions, ", "))
}

// Config configures a Client. The zero value is not usable: SDKAppID,
// SecretKey and one of Region or BaseURL must be set.
//
// Config never prints its SecretKey: String, GoString and LogValue redact it.
type Config struct {
	// SDKAppID is the application's ID from the Chat console. Required.
	SDKAppID uint64

	// SecretKey is the application's key, used only to sign UserSigs. It
	// never appears in an error, a log line or a printed Config. Required.
	SecretKey string

	// Admin is the app admin account sent as identifier and signed into the
	// UserSig. Defaults to DefaultAdmin ("administrator").
	Admin string

	// Region selects Tencent's domain for the SDKAppID's data center: one
	// of Regions (cn, ger, idn, ind, jpn, kr, sgp, usa). Exactly one of
	// Region and BaseURL must be set.
	Region string

	// BaseURL is the full base of the API, such as "http://127.0.0.1:9000"
	// for the emulator; requests go to BaseURL + "/v4/" + endpoint. It takes
	// the place of Region: exactly one of them must be set.
	BaseURL string

	// Timeout bounds one HTTP attempt, from taking a connection to reading
	// the whole answer; a context deadline that comes sooner bounds it
	// instead. Defaults to DefaultTimeout.
	Timeout time.Duration

	// MaxConns caps the keep-alive connections to the API; a call that
	// finds them all busy waits for one, within Timeout. Defaults to
	// DefaultMaxConns.
	MaxConns int

	// SigTTL is the lifetime of each UserSig. A cached sig is renewed
	// before use once less than a quarter of its life is left. Must be at
	// least MinSigTTL. Defaults to DefaultSigTTL (24h).
	SigTTL time.Duration

	// MaxResponseBytes caps the answer body the client reads; a larger
	// answer fails as a transport error (Code 0). Defaults to
	// DefaultMaxResponseBytes (1 MiB).
	MaxResponseBytes int64

	// Now is the clock that decides when the cached UserSig is renewed.
	// (The sig's own issue time comes from the signing library, which uses
	// the system clock.) Defaults to time.Now.
	Now func() time.Time

	// Rand returns the random query value sent with each request. Defaults
	// to math/rand/v2.Uint32.
	Rand func() uint32

	// Observer, when set, is called after every HTTP attempt (a call
	// repeated after a UserSig refusal makes two) with its outcome. It runs
	// on the caller's goroutine and must not block. Defaults to nil (none).
	Observer func(CallInfo)
	// HTTPClient sends the requests, for a caller that needs its own
	// proxies, TLS settings, tracing or test double (as with go-github's
	// NewClient). Timeout and MaxResponseBytes still bound each attempt;
	// MaxConns and the proxy settings are then the HTTPClient's to set.
	// Defaults to nil: a client of the Client's own, keeping up to
	// MaxConns HTTP/1.1 connections alive to the API host.
	HTTPClient *http.Client
}

const redacted = "REDACTED"

// String describes the Config with SecretKey redacted.
func (c Config) String() string {
	key := ""
	if c.SecretKey != "" {
		key = redacted
	}
	return fmt.Sprintf("chatapi.Config{SDKAppID:%d Admin:%q Region:%q BaseURL:%q SecretKey:%s SigTTL:%s MaxResponseBytes:%d}",
		c.SDKAppID, c.Admin, c.Region, c.BaseURL, key, c.SigTTL, c.MaxResponseBytes)
}

// GoString is String, so that %#v redacts SecretKey too.
func (c Config) GoString() string { return c.String() }

// LogValue implements slog.LogValuer with SecretKey redacted.
func (c Config) LogValue() slog.Value {
	key := ""
	if c.SecretKey != "" {
		key = redacted
	}
	return slog.GroupValue(
		slog.Uint64("sdkappid", c.SDKAppID),
		slog.String("admin", c.Admin),
		slog.String("region", c.Region),
		slog.String("base_url", c.BaseURL),
		slog.String("secret_key", key),
		slog.Duration("sig_ttl", c.SigTTL),
	)
}

// withDefaults returns c with zero fields set to their defaults and the base
// URL resolved, or the first validation error.
func (c Config) withDefaults() (Config, string, error) {
	if c.SDKAppID == 0 {
		return c, "", errors.New("chatapi: SDKAppID: must be set")
	}
	if c.SDKAppID > uint64(math.MaxInt) {
		return c, "", fmt.Errorf("chatapi: SDKAppID: %d is out of range", c.SDKAppID)
	}
	if strings.TrimSpace(c.SecretKey) == "" {
		return c, "", errors.New("chatapi: SecretKey: must be set (not blank)")
	}
	if c.Admin != "" && strings.TrimSpace(c.Admin) != c.Admin {
		return c, "", fmt.Errorf("chatapi: Admin: must not be blank or start or end with white space, got %q", c.Admin)
	}
	if c.Admin == "" {
		c.Admin = DefaultAdmin
	}
	var base string
	switch {
	case c.Region == "" && c.BaseURL == "":
		return c, "", errors.New("chatapi: Region or BaseURL: one must be set")
	case c.Region != "" && c.BaseURL != "":
		return c, "", errors.New("chatapi: Region or BaseURL: set one, not both")
	case c.Region != "":
		u, err := RegionBaseURL(c.Region)
		if err != nil {
			return c, "", fmt.Errorf("chatapi: Region: %w", err)
		}
		base = u
	default:
		// Errors show the URL with any password redacted: url.Error would
		// quote it whole.
		u, err := url.Parse(c.BaseURL)
		if err != nil {
			var ue *url.Error
			if errors.As(err, &ue) {
				err = ue.Err
			}
			return c, "", fmt.Errorf("chatapi: BaseURL: is not a URL: %v", err)
		}
		if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return c, "", fmt.Errorf("chatapi: BaseURL: %q must be an absolute http or https URL", u.Redacted())
		}
		if u.RawQuery != "" || u.Fragment != "" || u.User != nil {
			return c, "", fmt.Errorf("chatapi: BaseURL: %q must not have a query, fragment or user info", u.Redacted())
		}
		base = strings.TrimRight(u.String(), "/")
	}
	switch {
	case c.SigTTL == 0:
		c.SigTTL = DefaultSigTTL
	case c.SigTTL < MinSigTTL:
		return c, "", fmt.Errorf("chatapi: SigTTL: %s is shorter than %s", c.SigTTL, MinSigTTL)
	case c.SigTTL/time.Second > math.MaxInt32:
		return c, "", fmt.Errorf("chatapi: SigTTL: %s is too long", c.SigTTL)
	}
	var err error
	if c.MaxResponseBytes, err = orDefault("MaxResponseBytes", c.MaxResponseBytes, DefaultMaxResponseBytes); err != nil {
		return c, "", err
	}
	if c.Timeout, err = orDefault("Timeout", c.Timeout, DefaultTimeout); err != nil {
		return c, "", err
	}
	if c.MaxConns, err = orDefault("MaxConns", c.MaxConns, DefaultMaxConns); err != nil {
		return c, "", err
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Rand == nil {
		c.Rand = randUint32
	}
	return c, base, nil
}

// orDefault returns v, or def when v is zero; a negative v is an error
// naming field.
func orDefault[T int | int64 | time.Duration](field string, v, def T) (T, error) {
	switch {
	case v == 0:
		return def, nil
	case v < 0:
		return v, fmt.Errorf("chatapi: %s: %v is negative", field, v)
	}
	return v, nil
}
