package chatapi

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"net"
	"net/url"
	"time"

	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttpproxy"
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
// And the send deadline: the caller's goroutine checks it and then writes
// the request at once, on its own stack, with nothing in between that can
// block or yield to another goroutine but a dial when no kept-alive
// connection is free.
type transport struct {
	hc      *fasthttp.HostClient
	timeout time.Duration
	// ready, when set (tests), runs with each request built, just before
	// its send deadline is checked.
	ready func()
}

// userAgent names timq in each request's User-Agent header.
const userAgent = "timq"

// newTransport returns a transport for base (scheme and host, as Config
// resolves it): up to maxConns connections (callers beyond them wait for
// one, up to timeout), each attempt bounded by timeout, answers larger than
// maxBody refused. Proxies come from HTTP_PROXY, HTTPS_PROXY and NO_PROXY,
// as with net/http; loopback addresses are never proxied.
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
	d := &fasthttpproxy.Dialer{Timeout: timeout, ConnectTimeout: timeout, DialDualStack: true}
	// Names are resolved at each dial, as net/http does, rather than in a
	// cache with a goroutine of its own: connections are kept alive, so
	// dials are rare.
	d.DisableDNSResolution = true
	dial, err := d.GetDialFuncForTLS(true, isTLS)
	if err != nil {
		return nil, fmt.Errorf("proxy settings: %w", err)
	}
	return &transport{
		hc: &fasthttp.HostClient{
			Addr:                addr,
			Name:                userAgent,
			IsTLS:               isTLS,
			Dial:                dial,
			DialDualStack:       true,
			MaxConns:            maxConns,
			MaxConnWaitTimeout:  timeout,
			MaxResponseBodySize: int(min(maxBody, math.MaxInt)),
			ConnPoolStrategy:    fasthttp.LIFO,
			// A POST is never sent twice by the transport: a second copy
			// would be a call outside the rate budget. A failed attempt
			// is the caller's to retry.
			RetryIfErr: func(*fasthttp.Request, int, error) (bool, bool) { return false, false },
		},
		timeout: timeout,
	}, nil
}

// errAnswerTooLarge marks an answer over the size cap.
var errAnswerTooLarge = errors.New("answer too large")

// post sends body to rawURL and returns the answer's status and body. If
// sendBy is set and has passed when the request is about to be written,
// nothing is sent and the error is ErrSendDeadline. The attempt ends by
// deadline. status is 0 when no answer's status line arrived.
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
	if t.ready != nil {
		t.ready()
	}
	if !sendBy.IsZero() && time.Now().After(sendBy) {
		return 0, nil, ErrSendDeadline
	}
	err = t.hc.DoDeadline(req, resp, deadline)
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
		return status, nil, &url.Error{Op: "Post", URL: rawURL, Err: err}
	}
	return resp.StatusCode(), bytes.Clone(resp.Body()), nil
}

// closeIdle closes the connections no request is using.
func (t *transport) closeIdle() { t.hc.CloseIdleConnections() }
