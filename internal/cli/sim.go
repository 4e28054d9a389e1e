package cli

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/timq/timq/internal/chatapi"
	"github.com/timq/timq/internal/config"
	"github.com/timq/timq/internal/rxstamp"
	"github.com/timq/timq/internal/sim"
)

// simShutdownTimeout bounds how long `timq sim` waits for calls in flight
// when it stops.
const simShutdownTimeout = 5 * time.Second

const simUsage = `[flags]

Serves a strict emulator of the Tencent Cloud Chat REST API (clear_group_msg,
group_msg_recall, modify_group_msg, send_group_msg, group_msg_get_simple) on
http://ADDR/v4/..., with a JSON admin API under /_sim/ (GET /_sim/stats,
GET /_sim/groups/{id}/messages/{seq}[?topic=T], POST /_sim/groups,
PUT /_sim/faults/{command|all}, POST /_sim/reset). Point the worker at it with
TIMQ_API_BASE=http://ADDR.

Settings: TIMQ_SDKAPPID, TIMQ_SECRET_KEY or TIMQ_SECRET_KEY_FILE (UserSigs are
checked against them), TIMQ_ADMIN (the one admin identifier; default
administrator).

--group ID:TYPE[:N] creates a group with N messages; TYPE is Private (Work),
Public, ChatRoom (Meeting), AVChatRoom or Community (IDs starting "@TGS#_").
--seed-file F reads {"groups":[{"GroupId":..,"Type":..,"Messages":N,
"Topics":["ID@TOPIC#_name" or {"TopicId":..,"Messages":N}]}]}.

--fault ENDPOINT:ITEM[,ITEM...] injects faults; ENDPOINT is a short name
(clear_group_msg, group_msg_recall, modify_group_msg, send_group_msg,
group_msg_get_simple) or all; ITEM is code=10002:0.1 (an ErrorCode and its
probability), 502:0.05, hang:0.02, hang-for:20s, latency:40ms or jitter:20ms.
Later flags for the same endpoint add to earlier ones. Example:
  --fault all:latency:5ms --fault clear_group_msg:code=10002:0.1,502:0.05`

// stringList is a repeatable string flag.
type stringList []string

func (l *stringList) String() string     { return strings.Join(*l, " ") }
func (l *stringList) Set(s string) error { *l = append(*l, s); return nil }

// runSim serves the emulator until ctx is canceled, then stops gracefully:
// hangs in progress are cut, calls in flight get simShutdownTimeout.
func runSim(ctx context.Context, env *Env, args []string) error {
	fs := newFlagSet(env, "sim", simUsage)
	addr := fs.String("addr", "127.0.0.1:9000", "listen on HOST:PORT (port 0 picks a free one; the real address is printed)")
	rate := fs.Int("rate", sim.DefaultRate, "calls admitted per endpoint per --window before answering 60007; negative: no limit")
	window := fs.Duration("window", sim.DefaultWindow, "length of the sliding rate-limit window")
	autoCreate := fs.Bool("auto-create", false, "create a group (Public, or Community for \"@TGS#_\" IDs) or topic on first use instead of answering 10010")
	seed := fs.Int64("seed", 1, "seed of the fault and jitter draws: the same seed and calls give the same answers")
	seedFile := fs.String("seed-file", "", "create the groups, topics and messages listed in this JSON file")
	hangFor := fs.Duration("hang-for", sim.DefaultHangFor, "how long an injected hang lasts unless a --fault sets hang-for")
	callbackURL := fs.String("callback-url", "", "post Tencent's after-send webhook for every message stored to this `URL` (the app's callback URL)")
	callbackToken := fs.String("callback-token", "", "sign the webhooks with this callback authentication token (RequestTime and Sign)")
	callbackDup := fs.Float64("callback-duplicate", 0, "the share of webhooks sent twice (0 to 1), as Tencent's retry-on-timeout may")
	var groups, faults stringList
	fs.Var(&groups, "group", "create group `ID:TYPE[:N]` with N messages (repeatable)")
	fs.Var(&faults, "fault", "inject faults: `ENDPOINT:ITEM[,ITEM...]` (repeatable; see above)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return UsageError("unexpected argument %q", fs.Arg(0))
	}
	switch {
	case *rate == 0:
		return UsageError("--rate: must not be 0 (a negative value means no limit)")
	case *window <= 0:
		return UsageError("--window: must be positive, got %v", *window)
	case *hangFor <= 0:
		return UsageError("--hang-for: must be positive, got %v", *hangFor)
	}
	signing, err := config.LoadSigning(getenvOr(env))
	if err != nil {
		return settingError(err)
	}

	perEndpoint := map[chatapi.Endpoint]sim.Faults{}
	for _, ep := range chatapi.Endpoints {
		perEndpoint[ep] = sim.Faults{HangFor: *hangFor}
	}
	for _, spec := range faults {
		fspec, err := sim.ParseFaultSpec(spec)
		if err != nil {
			return UsageError("--fault: %v", err)
		}
		for _, ep := range fspec.Endpoints {
			perEndpoint[ep] = fspec.Apply(perEndpoint[ep])
			if err := perEndpoint[ep].Validate(); err != nil {
				return UsageError("--fault: %s: %v", ep.Short(), err)
			}
		}
	}
	var seedGroups []sim.SeedGroup
	for _, spec := range groups {
		g, err := sim.ParseGroupSpec(spec)
		if err != nil {
			return UsageError("--group: %v", err)
		}
		seedGroups = append(seedGroups, g)
	}

	var callbacks *sim.Callbacks
	if *callbackURL != "" {
		if u, err := url.Parse(*callbackURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return UsageError("--callback-url: want an http or https URL, got %q", *callbackURL)
		}
		if *callbackDup < 0 || *callbackDup > 1 {
			return UsageError("--callback-duplicate: want 0 to 1, got %v", *callbackDup)
		}
		callbacks = &sim.Callbacks{URL: *callbackURL, Token: *callbackToken, Duplicate: *callbackDup}
	} else if *callbackToken != "" || *callbackDup != 0 {
		return UsageError("--callback-token and --callback-duplicate need --callback-url")
	}
	srv, err := sim.New(sim.Config{
		SDKAppID:   signing.SDKAppID,
		SecretKey:  signing.SecretKey.Reveal(),
		Admins:     []string{signing.Admin},
		Rate:       *rate,
		Window:     *window,
		AutoCreate: *autoCreate,
		Seed:       *seed,
		Faults:     perEndpoint,
		Arrived:    receivedAt,
		Callbacks:  callbacks,
	})
	if err != nil {
		return UsageError("%v", err)
	}
	defer srv.Close()
	if *seedFile != "" {
		f, err := os.Open(*seedFile)
		if err != nil {
			return UsageError("--seed-file: %v", err)
		}
		sf, err := sim.ReadSeedFile(f)
		f.Close()
		if err != nil {
			return UsageError("--seed-file %s: %v", *seedFile, err)
		}
		if err := srv.Seed(sf); err != nil {
			return UsageError("--seed-file %s: %v", *seedFile, err)
		}
	}
	if err := srv.Seed(sim.SeedFile{Groups: seedGroups}); err != nil {
		return UsageError("--group: %v", err)
	}

	ln, err := rxstamp.Listen("tcp", *addr)
	if err != nil {
		return fmt.Errorf("--addr: %v", err)
	}
	hs := &http.Server{Handler: srv, ReadHeaderTimeout: 10 * time.Second, ConnContext: rxstamp.ConnContext}
	served := make(chan error, 1)
	go func() { served <- hs.Serve(ln) }()
	fmt.Fprintf(env.Stdout, "timq sim: listening on http://%s\n", ln.Addr())

	select {
	case err := <-served:
		return fmt.Errorf("serving: %v", err)
	case <-ctx.Done():
	}
	srv.Close() // cut hangs first: Shutdown waits for handlers
	sctx, cancel := context.WithTimeout(context.Background(), simShutdownTimeout)
	defer cancel()
	if err := hs.Shutdown(sctx); err != nil {
		hs.Close()
	}
	st := srv.Stats()
	var calls int64
	for _, e := range st.Endpoints {
		calls += e.Calls
	}
	fmt.Fprintf(env.Stderr, "timq sim: stopped after %d API calls\n", calls)
	return nil
}

// receivedAt is when the kernel received a request (see package rxstamp):
// the emulator counts calls by it, so calls it reads late, kept off a CPU it
// shares with the workers, still count in the second they arrived.
func receivedAt(r *http.Request) (time.Time, bool) { return rxstamp.Received(r.Context()) }
