package chatapi

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"net"
	"net/url"
	"sync"
	"time"

	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttpproxy"
	"golang.org/x/net/http/httpproxy"
)

// transport sends the client's requests: HTTP/1.1 POSTs with keep-alive
// connections to the API's one host, through fasthttp.
//
// Why not net/http: per call it hands the request to a write goroutine and
// the answer back from a read goroutine, and it allocates headers, URL and
// context plumbing on every request. A worker at the API's limit spends
// most of its CPU on the wake-ups and work around each call; with fasthttp
// the caller's goroutine writes the request and reads the answer itself,
// and requests and answers come from pools. Four workers in make bench
// spent about a fifth less CPU per call (issue 4; README, machine H).
//
// And the send deadline: the transport is the HostClient's RoundTripper,
// fasthttp's own round trip with one step added. Once the request has its
// connection, kept alive or just dialed, the caller's goroutine checks the
// deadline and then writes the request at once, on its own stack, with
// nothing in between that can block or yield to another goroutine.
type transport struct {
	hc      *fasthttp.HostClient
	timeout time.Duration
	// ready, when set (tests), runs with each request built and its
	// connection in hand, just before its send deadline is checked.
	ready func()

	mu      sync.Mutex
	pending map[*fasthttp.Request]bounds // requests in RoundTrip, by post
}

// bounds are one request's send deadline (zero: none) and the attempt's
// deadline.
type bounds struct{ sendBy, deadline time.Time }

// reuseAfterRefusal is how long a kept-alive connection may have been idle
// and still go back to the pool after a call on it was refused as late:
// short enough that its idle time plus idleConnTimeout stays within the 5 s
// that servers usually keep an idle connection.
const reuseAfterRefusal = 500 * time.Millisecond

// userAgent names timq in each request's User-Agent header.
const userAgent = "timq"

// idleConnTimeout is how long a kept-alive connection may sit unused
// before the transport closes it. A connection the server closed while
// idle fails the next call on it (the transport cannot tell that from a
// call sent and then dropped, and does not send a POST twice), so close
// ours first: servers and load balancers keep idle connections for 5 s
// or more, most for a minute.
const idleConnTimeout = 4 * time.Second

// newTransport returns a transport for base (scheme and host, as Config
// resolves it): up to maxConns connections (callers beyond them wait for
// one, up to timeout), each attempt bounded by timeout, answers larger than
// maxBody refused.
//
// A new connection's dial follows the attempt's deadline; its TLS
// handshake, and a proxy's CONNECT, are bounded by timeout. The send
// deadline is checked once a call has its connection, however it got it:
// kept alive, dialed, or after waiting for one (all maxConns busy).
func newTransport(base string, timeout time.Duration, maxConns int, maxBody int64) (*transport, error) {
	u, err := url.Parse(base)
	if err != nil {
		return nil, err
	}
	isTLS := u.Scheme == "https"
	addr := u.Host
	if u.Port() == "" {
		port := "80"
		if isTLS {
			port = "443"
		}
		addr = net.JoinHostPort(u.Hostname(), port)
	}
	hc := &fasthttp.HostClient{
		Addr:               addr,
		Name:               userAgent,
		IsTLS:              isTLS,
		MaxConns:           maxConns,
		MaxConnWaitTimeout: timeout,
		// Bounds a new connection's TLS handshake (fasthttp does it with
		// this deadline, from the dial's start) and each request's write.
		WriteTimeout:        timeout,
		MaxIdleConnDuration: idleConnTimeout,
		MaxResponseBodySize: int(min(maxBody, math.MaxInt)),
		ConnPoolStrategy:    fasthttp.LIFO,
		// Errors never quote the bytes of an answer that failed to parse.
		SecureErrorLogMessage: true,
		// A POST is never sent twice by the transport: a second copy
		// would be a call outside the rate budget. A failed attempt is
		// the caller's to retry.
		RetryIfErr: func(*fasthttp.Request, int, error) (bool, bool) { return false, false },
	}
	proxy, err := proxyFor(u)
	if err != nil {
		return nil, err
	}
	if proxy == nil {
		hc.DialTimeout = func(addr string, timeout time.Duration) (net.Conn, error) {
			return (&net.Dialer{Timeout: timeout}).Dial("tcp", addr)
		}
	} else {
		d := &fasthttpproxy.Dialer{
			Config:         httpproxy.Config{HTTPProxy: proxy.String(), HTTPSProxy: proxy.String()},
			Timeout:        timeout / 2,
			ConnectTimeout: timeout / 2,
			DialDualStack:  true,
		}
		// Names are resolved at each dial, as net/http does, rather than
		// in a cache with a goroutine of its own: dials are rare.
		d.DisableDNSResolution = true
		if hc.Dial, err = d.GetDialFuncForTLS(false, isTLS); err != nil {
			return nil, fmt.Errorf("proxy settings (HTTP_PROXY, HTTPS_PROXY): %s", proxy.Scheme)
		}
	}
	t := &transport{hc: hc, timeout: timeout, pending: make(map[*fasthttp.Request]bounds)}
	hc.Transport = t
	return t, nil
}

// proxyFor returns the proxy that HTTPS_PROXY, HTTP_PROXY and NO_PROXY name
// for u, read as net/http reads them (loopback hosts never go through a
// proxy), or nil for none. Its errors do not quote the setting, which may
// hold a password.
func proxyFor(u *url.URL) (*url.URL, error) {
	p, err := httpproxy.FromEnvironment().ProxyFunc()(u)
	switch {
	case err != nil:
		return nil, errors.New("proxy settings (HTTP_PROXY, HTTPS_PROXY): not a valid proxy URL")
	case p == nil:
		return nil, nil
	}
	switch p.Scheme {
	case "http", "socks5", "socks5h":
		return p, nil
	}
	return nil, fmt.Errorf("proxy settings (HTTP_PROXY, HTTPS_PROXY): %q proxies are not supported (use http:// or socks5://)", p.Scheme)
}

// errAnswerTooLarge marks an answer over the size cap.
var errAnswerTooLarge = errors.New("answer too large")

// post sends body to rawURL and returns the answer's status and body. If
// sendBy is set and has passed when the request is about to be written
// (see RoundTrip), nothing is sent and the error is ErrSendDeadline. The
// attempt ends by deadline. status is 0 when no answer's status line
// arrived.
func (t *transport) post(rawURL string, body []byte, sendBy, deadline time.Time) (status int, data []byte, err error) {
	req := fasthttp.AcquireRequest()
	resp := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI(rawURL)
	req.Header.SetMethod(fasthttp.MethodPost)
	req.Header.SetContentType("application/json")
	req.Header.Set(fasthttp.HeaderAccept, "application/json")
	req.SetBodyRaw(body)
	if late(sendBy) { // no connection to take, nor to dial
		return 0, nil, ErrSendDeadline
	}
	t.mu.Lock()
	t.pending[req] = bounds{sendBy: sendBy, deadline: deadline}
	t.mu.Unlock()
	defer func() {
		t.mu.Lock()
		delete(t.pending, req)
		t.mu.Unlock()
	}()
	err = t.hc.DoDeadline(req, resp, deadline)
	if err == ErrSendDeadline {
		return 0, nil, err
	}
	if resp.Header.ContentLength() != 0 {
		// The headers arrived (a parsed header always has a length, or
		// -1 or -2 for a chunked or close-delimited body; an empty body
		// cannot fail).
		status = resp.StatusCode()
	}
	if errors.Is(err, fasthttp.ErrBodyTooLarge) {
		return status, nil, errAnswerTooLarge
	}
	if err != nil {
		// Never the URL itself in an error: it holds the UserSig.
		return status, nil, &url.Error{Op: "Post", URL: redactURL(rawURL), Err: err}
	}
	return resp.StatusCode(), bytes.Clone(resp.Body()), nil
}

// late reports whether sendBy is set and has passed.
func late(sendBy time.Time) bool { return !sendBy.IsZero() && time.Now().After(sendBy) }

// RoundTrip makes one request for post (it is the HostClient's Transport):
// fasthttp's own round trip (DefaultTransport) for a buffered answer, with
// the send deadline checked once the request has a connection.
//
// Why there: a caller that finds no free kept-alive connection dials one,
// and a dial waits for the runtime to see the connection ready. A worker
// process with one thread (GOMAXPROCS=1) that is busy, or just back on the
// CPU, looks for ready connections only when it runs out of other work or
// every 10 ms: make bench saw calls that passed the check in time, dialed,
// and were written 10-20 ms later, six in 10 ms (204 calls in a sliding
// second, and 60007s). Checked here, such a call is not sent (the error is
// ErrSendDeadline) and its new connection goes to the pool for the next
// call; the cost is the slot. A kept-alive connection the late call took
// goes back too, unless it had been idle for over reuseAfterRefusal:
// fasthttp counts a connection's idle time from its last release, and
// releasing it again would keep it past idleConnTimeout, when the server
// may have closed it.
func (t *transport) RoundTrip(hc *fasthttp.HostClient, req *fasthttp.Request, resp *fasthttp.Response) (retry bool, err error) {
	t.mu.Lock()
	b, ok := t.pending[req]
	t.mu.Unlock()
	if !ok {
		return false, errors.New("chatapi: request not made by the transport")
	}
	cc, err := hc.AcquireConn(time.Until(b.deadline), false)
	if err != nil {
		return false, err
	}
	if t.ready != nil {
		t.ready()
	}
	if late(b.sendBy) {
		if used := cc.LastUseTime(); used.IsZero() || time.Since(used) < reuseAfterRefusal {
			hc.ReleaseConn(cc)
		} else {
			hc.CloseConn(cc)
		}
		return false, ErrSendDeadline
	}
	conn := cc.Conn()
	if err := conn.SetDeadline(b.deadline); err != nil {
		hc.CloseConn(cc)
		return false, err
	}
	bw := hc.AcquireWriter(conn)
	err = req.Write(bw)
	if err == nil {
		err = bw.Flush()
	}
	hc.ReleaseWriter(bw)
	if err != nil {
		hc.CloseConn(cc)
		if x, ok := err.(interface{ Timeout() bool }); ok && x.Timeout() {
			err = fasthttp.ErrTimeout
		}
		return false, err
	}
	br := hc.AcquireReader(conn)
	err = resp.ReadLimitBody(br, hc.MaxResponseBodySize)
	hc.ReleaseReader(br)
	if err != nil || resp.ConnectionClose() {
		hc.CloseConn(cc)
		return false, err
	}
	hc.ReleaseConn(cc)
	return false, nil
}

// LingeringGoroutine is the function of the one goroutine a Client can
// leave running after its last call: fasthttp's cleaner of idle
// connections, which ends by itself at its next pass once the client has
// none, up to the idle timeout (4 s) later. Leak checks in tests ignore it.
const LingeringGoroutine = "github.com/valyala/fasthttp.(*HostClient).connsCleaner"

// closeIdle closes the connections no request is using.
func (t *transport) closeIdle() { t.hc.CloseIdleConnections() }
