package sim

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/timq/timq/internal/chatapi"
)

// Defaults for Config and Faults.
const (
	// DefaultAdmin is the one admin identifier when Config.Admins is empty.
	DefaultAdmin = "administrator"
	// DefaultRate is Tencent's documented limit for each of the three APIs.
	DefaultRate = 200
	// DefaultWindow is the length of the sliding rate-limit window.
	DefaultWindow = time.Second
	// DefaultHangFor is how long a hang lasts when Faults.HangFor is 0: past
	// the client's 10 s timeout, so the client gives up first.
	DefaultHangFor = 15 * time.Second
	// MaxBodyBytes is the largest request body read; a larger one is answered
	// like a body that is not JSON.
	MaxBodyBytes = 1 << 20
	// MaxSeedMessages is the most messages one seeding call adds to a group.
	MaxSeedMessages = 1_000_000
	// maxRate bounds Config.Rate so the limiter's ring stays small.
	maxRate = 1_000_000
)

// Config is everything New needs. The zero value of every field but
// SDKAppID and SecretKey is usable.
type Config struct {
	// SDKAppID is the only app the emulator serves; requests for another
	// answer 60006. Required.
	SDKAppID uint64
	// SecretKey checks UserSigs. Required. Never printed or served.
	SecretKey string
	// Admins are the identifiers accepted as app admins; any other answers
	// 60010. Defaults to [DefaultAdmin].
	Admins []string
	// Rate is how many calls each endpoint admits per Window; the next
	// answers 60007. Defaults to DefaultRate; a negative value disables the
	// limit.
	Rate int
	// Window is the length of the sliding window Rate applies to. Defaults to
	// DefaultWindow.
	Window time.Duration
	// AutoCreate makes a call naming a group or topic that does not exist
	// create it (a Public group, or a Community when the ID starts "@TGS#_")
	// instead of answering 10010.
	AutoCreate bool
	// Seed seeds the per-endpoint random sources that draw faults and jitter:
	// the same seed and the same sequence of calls give the same answers.
	Seed int64
	// Now is the clock for rate limiting, statistics, message times and
	// UserSig expiry. Defaults to time.Now. Latency and hangs always use real
	// timers.
	Now func() time.Time
	// Arrived, when set, tells when a request arrived, for rate limiting,
	// statistics and message times in place of Now. It reports false when
	// it does not know, and Now is used. `timq sim` sets it to the kernel's
	// receive stamp (package rxstamp), so a call the emulator reads late,
	// kept off the CPU, still counts in the second it arrived. Calls are
	// handled in the order they are read, which may differ from the order
	// they arrived; the rate limit and the statistics place each call at
	// its arrival exactly (one more than a window late counts a window
	// before the latest).
	Arrived func(*http.Request) (time.Time, bool)
	// Faults are the faults injected per endpoint from the start; SetFaults
	// changes them later.
	Faults map[chatapi.Endpoint]Faults
	// Callbacks, when set, makes the emulator post the after-send webhook
	// for every message it stores.
	Callbacks *Callbacks
}

// Faults are failures injected into one endpoint's answers. They are drawn
// after authentication and rate limiting, before the request touches any
// state, so a faulted call changes nothing. Exactly one outcome is drawn per
// admitted call: each code in Codes with its probability, then HTTP502, then
// Hang, else the real answer. Latency and Jitter delay every call.
type Faults struct {
	// Codes maps an ErrorCode to the probability of answering it (FAIL,
	// HTTP 200), e.g. {10002: 0.1}.
	Codes map[int]float64
	// HTTP502 is the probability of an HTTP 502 with an HTML body, as a
	// gateway in front of the API would answer.
	HTTP502 float64
	// Hang is the probability of answering nothing: the call waits HangFor,
	// or until the client gives up or the Server closes, and the connection
	// is then dropped (the handler panics with http.ErrAbortHandler, which
	// net/http's server handles; call the Server through one).
	Hang float64
	// HangFor is how long a hang lasts. Defaults to DefaultHangFor.
	HangFor time.Duration
	// Latency delays every call of the endpoint by this much before it is
	// answered.
	Latency time.Duration
	// Jitter adds a uniformly drawn extra delay in [0, Jitter].
	Jitter time.Duration
}

// Validate reports the first invalid field: a probability outside [0,1],
// probabilities that sum to more than 1, code 0, or a negative duration.
func (f Faults) Validate() error {
	sum := 0.0
	check := func(name string, p float64) error {
		if math.IsNaN(p) || p < 0 || p > 1 {
			return fmt.Errorf("%s: probability %v is not within [0,1]", name, p)
		}
		sum += p
		return nil
	}
	for _, code := range f.codes() {
		if code <= 0 {
			return fmt.Errorf("code %d: an injected ErrorCode must be positive", code)
		}
		if err := check("code "+strconv.Itoa(code), f.Codes[code]); err != nil {
			return err
		}
	}
	if err := check("502", f.HTTP502); err != nil {
		return err
	}
	if err := check("hang", f.Hang); err != nil {
		return err
	}
	if sum > 1+1e-9 {
		return fmt.Errorf("fault probabilities add up to %v, more than 1", sum)
	}
	for _, d := range []struct {
		name string
		d    time.Duration
	}{{"hang-for", f.HangFor}, {"latency", f.Latency}, {"jitter", f.Jitter}} {
		if d.d < 0 {
			return fmt.Errorf("%s: %v is negative", d.name, d.d)
		}
	}
	return nil
}

// codes returns the injected codes in ascending order, the order outcomes
// are drawn in.
func (f Faults) codes() []int {
	codes := make([]int, 0, len(f.Codes))
	for c := range f.Codes {
		codes = append(codes, c)
	}
	sort.Ints(codes)
	return codes
}

func (f Faults) clone() Faults {
	if f.Codes != nil {
		m := make(map[int]float64, len(f.Codes))
		for k, v := range f.Codes {
			m[k] = v
		}
		f.Codes = m
	}
	return f
}

func (f Faults) hangFor() time.Duration {
	if f.HangFor <= 0 {
		return DefaultHangFor
	}
	return f.HangFor
}

// faultsJSON is the wire form of Faults: durations are strings ("40ms") on
// output and strings or integer milliseconds on input.
type faultsJSON struct {
	Codes   map[int]float64 `json:"Codes,omitempty"`
	HTTP502 float64         `json:"HTTP502,omitempty"`
	Hang    float64         `json:"Hang,omitempty"`
	HangFor json.RawMessage `json:"HangFor,omitempty"`
	Latency json.RawMessage `json:"Latency,omitempty"`
	Jitter  json.RawMessage `json:"Jitter,omitempty"`
}

// MarshalJSON writes durations as Go duration strings.
func (f Faults) MarshalJSON() ([]byte, error) {
	dur := func(d time.Duration) json.RawMessage {
		if d == 0 {
			return nil
		}
		return json.RawMessage(strconv.Quote(d.String()))
	}
	return json.Marshal(faultsJSON{Codes: f.Codes, HTTP502: f.HTTP502, Hang: f.Hang,
		HangFor: dur(f.HangFor), Latency: dur(f.Latency), Jitter: dur(f.Jitter)})
}

// UnmarshalJSON reads durations as strings ("40ms", "1.5s") or as integer
// milliseconds. Unknown fields are an error.
func (f *Faults) UnmarshalJSON(b []byte) error {
	var w faultsJSON
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&w); err != nil {
		return err
	}
	out := Faults{Codes: w.Codes, HTTP502: w.HTTP502, Hang: w.Hang}
	for _, d := range []struct {
		name string
		raw  json.RawMessage
		dst  *time.Duration
	}{{"HangFor", w.HangFor, &out.HangFor}, {"Latency", w.Latency, &out.Latency}, {"Jitter", w.Jitter, &out.Jitter}} {
		if len(d.raw) == 0 || string(d.raw) == "null" {
			continue
		}
		v, err := parseJSONDuration(d.raw)
		if err != nil {
			return fmt.Errorf("%s: %w", d.name, err)
		}
		*d.dst = v
	}
	*f = out
	return nil
}

func parseJSONDuration(raw json.RawMessage) (time.Duration, error) {
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		return parseDuration(s)
	}
	var ms int64
	if err := json.Unmarshal(raw, &ms); err != nil {
		return 0, fmt.Errorf("must be a duration string like \"40ms\" or integer milliseconds")
	}
	return time.Duration(ms) * time.Millisecond, nil
}

// parseDuration reads "40ms", "1.5s" or a bare integer meaning milliseconds.
func parseDuration(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		return time.Duration(n) * time.Millisecond, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration (like 40ms or 1.5s)", s)
	}
	return d, nil
}

func (c Config) withDefaults() (Config, error) {
	if c.SDKAppID == 0 {
		return c, fmt.Errorf("sim: Config.SDKAppID is required")
	}
	if c.SecretKey == "" {
		return c, fmt.Errorf("sim: Config.SecretKey is required")
	}
	if len(c.Admins) == 0 {
		c.Admins = []string{DefaultAdmin}
	}
	for _, a := range c.Admins {
		if a == "" {
			return c, fmt.Errorf("sim: Config.Admins holds an empty identifier")
		}
	}
	switch {
	case c.Rate == 0:
		c.Rate = DefaultRate
	case c.Rate > maxRate:
		return c, fmt.Errorf("sim: Config.Rate %d is more than %d", c.Rate, maxRate)
	}
	if c.Window == 0 {
		c.Window = DefaultWindow
	}
	if c.Window < 0 {
		return c, fmt.Errorf("sim: Config.Window %v is negative", c.Window)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	for ep, f := range c.Faults {
		if !knownEndpoint(ep) {
			return c, fmt.Errorf("sim: Config.Faults: unknown endpoint %q", ep)
		}
		if err := f.Validate(); err != nil {
			return c, fmt.Errorf("sim: Config.Faults[%s]: %w", ep.Short(), err)
		}
	}
	return c, nil
}

func knownEndpoint(ep chatapi.Endpoint) bool {
	for _, e := range chatapi.Endpoints {
		if e == ep {
			return true
		}
	}
	return false
}

// ParseEndpoint turns a short name ("clear_group_msg") or a full one
// ("group_open_http_svc/clear_group_msg") into the Endpoint.
func ParseEndpoint(name string) (chatapi.Endpoint, error) {
	for _, e := range chatapi.Endpoints {
		if name == string(e) || name == e.Short() {
			return e, nil
		}
	}
	names := make([]string, len(chatapi.Endpoints))
	for i, e := range chatapi.Endpoints {
		names[i] = e.Short()
	}
	return "", fmt.Errorf("unknown endpoint %q (want one of %s)", name, strings.Join(names, ", "))
}
