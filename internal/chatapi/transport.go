package chatapi

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"time"

	"golang.org/x/net/http/httpproxy"
)

// transport sends the client's requests: POSTs through an *http.Client,
// the caller's (Config.HTTPClient) or one of the client's own with a
// transport tuned for one API host (see newHTTPClient).
type transport struct {
	hc      *http.Client
	timeout time.Duration
	maxBody int64
}

// userAgent names timq in each request's User-Agent header.
const userAgent = "timq"

// idleConnTimeout is how long a kept-alive connection may sit unused
// before the transport closes it. A connection the server closed while
// idle fails the next call on it, and the transport does not send a POST
// twice, so ours are closed first: servers and load balancers keep idle
// connections for 5 s or more, most for a minute.
const idleConnTimeout = 4 * time.Second

// LingeringGoroutines are the functions of the goroutines a Client's own
// transport may leave running for a moment after its last call: net/http's
// loops of a kept-alive connection, which end once it is closed (at the
// idle timeout, or by closing idle connections). Leak checks in tests
// ignore them.
var LingeringGoroutines = []string{
	"net/http.(*persistConn).readLoop",
	"net/http.(*persistConn).writeLoop",
}

// newTransport returns a transport for base (scheme and host, as Config
// resolves it): each attempt bounded by timeout, answers larger than
// maxBody refused. A nil hc gets the client's own (newHTTPClient).
func newTransport(base string, timeout time.Duration, maxConns int, maxBody int64, hc *http.Client) (*transport, error) {
	u, err := url.Parse(base)
	if err != nil {
		return nil, err
	}
	if hc == nil {
		if _, err := proxyFor(u); err != nil {
			return nil, err
		}
		hc = newHTTPClient(timeout, maxConns)
	}
	return &transport{hc: hc, timeout: timeout, maxBody: maxBody}, nil
}

// newHTTPClient returns the client's own HTTP client: HTTP/1.1 keep-alive
// connections to the API host, up to maxConns of them (a call that finds
// them all busy waits for one), dials and TLS handshakes bounded by
// timeout, proxies from HTTPS_PROXY, HTTP_PROXY and NO_PROXY as net/http
// reads them. Tencent's REST API speaks HTTP/1.1; one connection per call
// in flight keeps a slow answer from holding up the calls behind it.
func newHTTPClient(timeout time.Duration, maxConns int) *http.Client {
	// Read when the Client is made, not once per process as
	// http.ProxyFromEnvironment does.
	proxy := httpproxy.FromEnvironment().ProxyFunc()
	return &http.Client{
		Transport: &http.Transport{
			Proxy:                 func(r *http.Request) (*url.URL, error) { return proxy(r.URL) },
			DialContext:           (&net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second}).DialContext,
			TLSHandshakeTimeout:   timeout,
			MaxIdleConns:          maxConns,
			MaxIdleConnsPerHost:   maxConns,
			MaxConnsPerHost:       maxConns,
			IdleConnTimeout:       idleConnTimeout,
			ExpectContinueTimeout: time.Second,
			ForceAttemptHTTP2:     false,
		},
		// The API never redirects; a redirect would resend the UserSig.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
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
	case "http", "https", "socks5", "socks5h":
		return p, nil
	}
	return nil, fmt.Errorf("proxy settings (HTTP_PROXY, HTTPS_PROXY): %q proxies are not supported (use http://, https:// or socks5://)", p.Scheme)
}

// errAnswerTooLarge marks an answer over the size cap.
var errAnswerTooLarge = errors.New("answer too large")

// post sends body to rawURL and returns the answer's status and body. The
// attempt ends by deadline or when ctx ends, whichever comes first; a call
// cut off that way may or may not have reached the API. status is 0 when
// no answer's status line arrived.
func (t *transport) post(ctx context.Context, rawURL string, body []byte, deadline time.Time) (status int, data []byte, err error) {
	ctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, rawURL, bytes.NewReader(body))
	if err != nil {
		return 0, nil, &url.Error{Op: "Post", URL: redactURL(rawURL), Err: errors.New("bad request URL")}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", userAgent)
	resp, err := t.hc.Do(req)
	if err != nil {
		// Never the URL itself in an error: it holds the UserSig.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return 0, nil, &url.Error{Op: "Post", URL: redactURL(rawURL), Err: err}
	}
	defer resp.Body.Close()
	data, err = io.ReadAll(io.LimitReader(resp.Body, t.maxBody+1))
	if err != nil {
		return resp.StatusCode, nil, &url.Error{Op: "Post", URL: redactURL(rawURL), Err: err}
	}
	if int64(len(data)) > t.maxBody {
		return resp.StatusCode, nil, errAnswerTooLarge
	}
	return resp.StatusCode, data, nil
}

// closeIdle closes the connections no request is using.
func (t *transport) closeIdle() { t.hc.CloseIdleConnections() }
