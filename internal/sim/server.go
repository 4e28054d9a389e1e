package sim

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/timq/timq/internal/chatapi"
	"github.com/timq/timq/internal/usersig"
)

// knownServices are the REST API services Tencent serves. A path under one
// of them naming a command the emulator does not emulate answers 10003; a
// path under any other answers 60002.
var knownServices = map[string]struct{}{
	"group_open_http_svc": {}, "openim": {}, "im_open_login_svc": {}, "all_member_push": {},
	"profile": {}, "sns": {}, "recentcontact": {}, "openconfigsvr": {}, "open_msg_svc": {},
	"openim_dirty_words": {}, "ConfigSvc": {}, "openim_robot_http_svc": {},
}

// Server is the emulator. It implements http.Handler: /v4/... is the REST
// API, /_sim/... the JSON admin API. All methods are safe for concurrent use.
type Server struct {
	cfg    Config
	admins map[string]struct{}
	eps    map[chatapi.Endpoint]*endpoint
	admin  *http.ServeMux

	closeOnce sync.Once
	closed    chan struct{}

	reqID atomic.Uint64
	other atomic.Int64

	cb *callbackSender // nil without Config.Callbacks

	sigMu sync.Mutex
	sigs  map[string]usersig.Claims // sigs whose HMAC matched, to skip inflating them again

	mu     sync.Mutex // guards the fields below
	start  time.Time
	groups map[string]*group
	totals struct{ recalled, modified, cleared, sent int64 }
	// recalledPerSecond counts messages newly recalled per second since
	// start, by the arrival of the call that recalled them.
	recalledPerSecond []int64
}

// endpoint is one emulated endpoint's limiter, faults, random sources and
// counters, all guarded by mu.
type endpoint struct {
	name    chatapi.Endpoint
	handler func(s *Server, e *endpoint, c *call) answer

	mu      sync.Mutex
	faults  Faults
	outcome *rand.Rand // draws one fault outcome per admitted call
	jitter  *rand.Rand // draws one jitter per call
	limit   limiter
	start   time.Time
	stats   epStats
}

// call is one API request past the checks.
type call struct {
	ctx        context.Context
	identifier string
	raw        map[string]json.RawMessage // the body's top-level fields
	body       []byte
	at         time.Time // when the call arrived, by Config.Arrived or Config.Now (before any latency)
}

// answer is any response struct embedding chatapi.Envelope.
type answer interface{ env() *chatapi.Envelope }

type envOnly struct{ chatapi.Envelope }

func (e *envOnly) env() *chatapi.Envelope { return &e.Envelope }

type clearAnswer struct{ chatapi.ClearGroupMsgResponse }

func (a *clearAnswer) env() *chatapi.Envelope { return &a.Envelope }

type recallAnswer struct{ chatapi.GroupMsgRecallResponse }

func (a *recallAnswer) env() *chatapi.Envelope { return &a.Envelope }

type modifyAnswer struct{ chatapi.ModifyGroupMsgResponse }

func (a *modifyAnswer) env() *chatapi.Envelope { return &a.Envelope }

type sendAnswer struct{ chatapi.SendGroupMsgResponse }

func (a *sendAnswer) env() *chatapi.Envelope { return &a.Envelope }

type getSimpleAnswer struct {
	chatapi.GroupMsgGetSimpleResponse
}

func (a *getSimpleAnswer) env() *chatapi.Envelope { return &a.Envelope }

func failure(code int, format string, args ...any) answer {
	return &envOnly{chatapi.Envelope{ActionStatus: "FAIL", ErrorCode: code, ErrorInfo: fmt.Sprintf(format, args...)}}
}

func okEnvelope() chatapi.Envelope { return chatapi.Envelope{ActionStatus: "OK"} }

// New returns an emulator with no groups. It fails when SDKAppID or
// SecretKey is missing or a setting is out of range.
func New(cfg Config) (*Server, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	s := &Server{
		cfg:    cfg,
		admins: map[string]struct{}{},
		eps:    map[chatapi.Endpoint]*endpoint{},
		closed: make(chan struct{}),
		groups: map[string]*group{},
		sigs:   map[string]usersig.Claims{},
	}
	for _, a := range cfg.Admins {
		s.admins[a] = struct{}{}
	}
	handlers := map[chatapi.Endpoint]func(*Server, *endpoint, *call) answer{
		chatapi.EndpointClear:     (*Server).clearGroupMsg,
		chatapi.EndpointRecall:    (*Server).groupMsgRecall,
		chatapi.EndpointModify:    (*Server).modifyGroupMsg,
		chatapi.EndpointSend:      (*Server).sendGroupMsg,
		chatapi.EndpointGetSimple: (*Server).groupMsgGetSimple,
	}
	for _, name := range chatapi.Endpoints {
		e := &endpoint{name: name, handler: handlers[name], faults: cfg.Faults[name].clone()}
		s.eps[name] = e
	}
	s.cfg.Faults = nil
	if c := cfg.Callbacks; c != nil && c.URL != "" {
		dup := rand.New(rand.NewPCG(uint64(cfg.Seed), 0xca11))
		s.cb = newCallbackSender(*c, cfg.SDKAppID, cfg.Now, dup.Float64)
	}
	s.Reset()
	s.admin = s.adminMux()
	return s, nil
}

// Reset drops every group and message and zeroes the statistics, the rate
// limiter windows and the random sources (so a run after Reset repeats a
// run after New). Faults stay as set.
func (s *Server) Reset() {
	now := s.cfg.Now()
	s.mu.Lock()
	s.start = now
	s.groups = map[string]*group{}
	s.totals = struct{ recalled, modified, cleared, sent int64 }{}
	s.recalledPerSecond = nil
	s.mu.Unlock()
	s.other.Store(0)
	for _, e := range s.eps {
		h := fnv.New64a()
		h.Write([]byte(e.name))
		k := h.Sum64()
		e.mu.Lock()
		e.outcome = rand.New(rand.NewPCG(uint64(s.cfg.Seed), k))
		e.jitter = rand.New(rand.NewPCG(uint64(s.cfg.Seed), ^k))
		e.limit = newLimiter(s.cfg.Rate, s.cfg.Window)
		e.start = now
		e.stats = newEpStats()
		e.mu.Unlock()
	}
}

// SetFaults replaces the faults injected into ep from the next call on. It
// fails on an unknown endpoint or invalid faults (see Faults.Validate).
func (s *Server) SetFaults(ep chatapi.Endpoint, f Faults) error {
	if err := f.Validate(); err != nil {
		return err
	}
	e, ok := s.eps[ep]
	if !ok {
		return fmt.Errorf("sim: unknown endpoint %q", ep)
	}
	e.mu.Lock()
	e.faults = f.clone()
	e.mu.Unlock()
	return nil
}

// FaultsOf returns the faults injected into ep.
func (s *Server) FaultsOf(ep chatapi.Endpoint) Faults {
	e, ok := s.eps[ep]
	if !ok {
		return Faults{}
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.faults.clone()
}

// Close ends every hang and injected delay in progress (their connections
// are dropped) and makes later ones end at once. Call it before
// http.Server.Shutdown, which waits for handlers. The Server still answers
// other calls after Close.
func (s *Server) Close() {
	s.closeOnce.Do(func() {
		close(s.closed)
		s.cb.close()
	})
}

// ServeHTTP answers the REST API under /v4/ and the admin API under /_sim/.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if strings.HasPrefix(r.URL.Path, "/_sim/") || r.URL.Path == "/_sim" {
		s.admin.ServeHTTP(w, r)
		return
	}
	ep, code, info := route(r.URL.Path)
	if code != 0 {
		s.other.Add(1)
		s.write(w, failure(code, "%s", info))
		return
	}
	s.serveAPI(w, r, s.eps[ep])
}

// route maps a path to an emulated endpoint, or to the code to answer.
func route(path string) (chatapi.Endpoint, int, string) {
	rest, found := strings.CutPrefix(path, "/v4/")
	parts := strings.Split(rest, "/")
	if !found || len(parts) != 2 || parts[0] == "" || parts[1] == "" {
		return "", CodePublicBadURL, "bad URL: want /v4/{service}/{command}"
	}
	if _, ok := knownServices[parts[0]]; !ok {
		return "", CodePublicBadURL, fmt.Sprintf("bad URL: unknown service %q", parts[0])
	}
	if ep := chatapi.Endpoint(rest); knownEndpoint(ep) {
		return ep, 0, ""
	}
	return "", CodeBadCommand, fmt.Sprintf("invalid command word %q (not emulated)", parts[1])
}

// serveAPI runs one call: count it, check the request line and UserSig,
// apply the rate limit, draw a fault, wait the latency, then answer.
func (s *Server) serveAPI(w http.ResponseWriter, r *http.Request, e *endpoint) {
	read := s.cfg.Now()
	now := read
	if s.cfg.Arrived != nil {
		if at, ok := s.cfg.Arrived(r); ok {
			now = at
		}
	}
	e.mu.Lock()
	e.stats.call(e.start, now, read)
	f := e.faults
	delay := f.Latency
	if j := e.jitter.Float64(); f.Jitter > 0 {
		delay += time.Duration(j * float64(f.Jitter+1))
	}
	e.mu.Unlock()

	c, refused := s.check(r, e.name, now)
	var out outcome
	if refused == nil {
		e.mu.Lock()
		if e.limit.allow(now) {
			e.stats.admit(now)
			out = e.draw()
		} else {
			refused = failure(CodePublicRateLimited, "REST API call rate over limit (%d per %v)", s.cfg.Rate, s.cfg.Window)
		}
		e.mu.Unlock()
	}

	if delay > 0 && !s.sleep(r.Context(), delay) {
		e.count(func(st *epStats) { st.Aborted++ })
		return
	}
	switch {
	case refused != nil:
		s.answer(w, e, refused)
	case out.http502:
		e.count(func(st *epStats) { st.HTTP502++ })
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(http.StatusBadGateway)
		io.WriteString(w, badGatewayHTML)
	case out.hang:
		e.count(func(st *epStats) { st.Hangs++ })
		s.sleep(r.Context(), f.hangFor())
		// Drop the connection without an answer, as a stuck server would.
		panic(http.ErrAbortHandler)
	case out.code != 0:
		s.answer(w, e, failure(out.code, "injected fault: ErrorCode %d", out.code))
	default:
		s.answer(w, e, e.handler(s, e, c))
	}
}

const badGatewayHTML = "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"

// outcome is the fault drawn for one admitted call.
type outcome struct {
	code    int
	http502 bool
	hang    bool
}

// draw picks one outcome with a single draw from the endpoint's source:
// codes in ascending order, then 502, then hang. e.mu is held.
func (e *endpoint) draw() outcome {
	u := e.outcome.Float64()
	acc := 0.0
	for _, code := range e.faults.codes() {
		if acc += e.faults.Codes[code]; u < acc {
			return outcome{code: code}
		}
	}
	if acc += e.faults.HTTP502; u < acc {
		return outcome{http502: true}
	}
	if acc += e.faults.Hang; u < acc {
		return outcome{hang: true}
	}
	return outcome{}
}

func (e *endpoint) count(f func(*epStats)) {
	e.mu.Lock()
	f(&e.stats)
	e.mu.Unlock()
}

// sleep waits d, and reports false if the request ended or the Server
// closed first.
func (s *Server) sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	case <-s.closed:
		return false
	}
}

// check validates the request line, authenticates the caller and reads the
// body, in the order Tencent does. A non-nil answer is the refusal.
func (s *Server) check(r *http.Request, ep chatapi.Endpoint, now time.Time) (*call, answer) {
	if r.Method != http.MethodPost {
		return nil, failure(CodePublicBadURL, "bad request: method must be POST, got %s", r.Method)
	}
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return nil, failure(CodePublicBadURL, "bad URL: the query string does not parse")
	}
	appRaw := q.Get("sdkappid")
	if appRaw == "" {
		return nil, failure(CodePublicNoAppID, "sdkappid is missing")
	}
	app, err := strconv.ParseUint(appRaw, 10, 64)
	if err != nil || app != s.cfg.SDKAppID {
		return nil, failure(CodePublicBadAppID, "invalid sdkappid %q", appRaw)
	}
	if ct := q.Get("contenttype"); ct != "json" {
		return nil, failure(CodePublicBadURL, "bad URL: contenttype must be json")
	}
	identifier := q.Get("identifier")
	if identifier == "" {
		return nil, failure(CodePublicBadIdent, "identifier is missing")
	}
	if _, ok := s.admins[identifier]; !ok {
		return nil, failure(CodePublicNotAdmin, "identifier %q is not an app admin", identifier)
	}
	if err := s.checkSig(q.Get("usersig"), identifier, now); err != nil {
		var ue *usersig.Error
		if errors.As(err, &ue) {
			return nil, failure(ue.Code, "%s", ue.Reason)
		}
		return nil, failure(usersig.CodeUnparsable, "UserSig check failed")
	}
	randRaw := q.Get("random")
	if randRaw == "" {
		return nil, failure(CodePublicBadURL, "bad URL: random is missing")
	}
	if _, err := strconv.ParseUint(randRaw, 10, 32); err != nil {
		return nil, failure(CodePublicBadURL, "bad URL: random %q is not a 32-bit unsigned integer", randRaw)
	}
	notJSON := CodePublicNotJSON
	if ep == chatapi.EndpointModify {
		notJSON = CodeModifyJSON
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, MaxBodyBytes+1))
	if err != nil {
		return nil, failure(notJSON, "cannot read the request body")
	}
	if len(body) > MaxBodyBytes {
		return nil, failure(notJSON, "request body is larger than %d bytes", MaxBodyBytes)
	}
	var raw map[string]json.RawMessage
	if err := decodeOne(body, &raw); err != nil || raw == nil {
		return nil, failure(notJSON, "request body is not a JSON object")
	}
	return &call{ctx: r.Context(), identifier: identifier, raw: raw, body: body, at: now}, nil
}

// maxSigCache bounds the cache of verified UserSigs; it is emptied when full.
const maxSigCache = 256

// checkSig is usersig.Check with a cache of sigs whose HMAC already matched.
// A cached sig is still checked for identifier, SDKAppID and expiry, in the
// same order, so the answer is the same as without the cache.
func (s *Server) checkSig(sig, identifier string, now time.Time) error {
	s.sigMu.Lock()
	c, ok := s.sigs[sig]
	s.sigMu.Unlock()
	if !ok {
		if err := usersig.Check(sig, s.cfg.SecretKey, s.cfg.SDKAppID, identifier, now); err != nil {
			return err
		}
		c, _ = usersig.Parse(sig)
		s.sigMu.Lock()
		if len(s.sigs) >= maxSigCache {
			clear(s.sigs)
		}
		s.sigs[sig] = c
		s.sigMu.Unlock()
		return nil
	}
	switch {
	case c.Identifier != identifier:
		return &usersig.Error{Code: usersig.CodeIdentifierMismatch, Reason: "UserSig was made for another identifier"}
	case c.SDKAppID != s.cfg.SDKAppID:
		return &usersig.Error{Code: usersig.CodeSDKAppIDMismatch, Reason: fmt.Sprintf("UserSig was made for SDKAppID %d", c.SDKAppID)}
	case now.After(c.ExpiresAt()):
		return &usersig.Error{Code: usersig.CodeExpired, Reason: "UserSig expired at " + c.ExpiresAt().UTC().Format(time.RFC3339)}
	}
	return nil
}

// decodeOne decodes exactly one JSON value from b.
func decodeOne(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return fmt.Errorf("data after the JSON value")
	}
	return nil
}

// answer writes a JSON answer and counts its code.
func (s *Server) answer(w http.ResponseWriter, e *endpoint, a answer) {
	code := a.env().ErrorCode
	e.count(func(st *epStats) { st.Codes[code]++ })
	s.write(w, a)
}

func (s *Server) write(w http.ResponseWriter, a answer) {
	env := a.env()
	if env.ActionStatus == "" {
		env.ActionStatus = "OK"
	}
	env.RequestID = "sim-" + strconv.FormatUint(s.reqID.Add(1), 10)
	b, err := json.Marshal(a)
	if err != nil {
		b = []byte(`{"ActionStatus":"FAIL","ErrorCode":10002,"ErrorInfo":"emulator could not encode its answer"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	w.Write(b)
}
