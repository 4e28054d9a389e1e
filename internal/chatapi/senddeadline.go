package chatapi

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/http/httptrace"
	"sync/atomic"
	"time"
)

// ErrSendDeadline is the error of a call whose context carries a send
// deadline (WithSendDeadline) that passed before the request left. Nothing
// was sent: the API did not see the call. Make it again when the rate
// limiter grants a new slot.
var ErrSendDeadline = errors.New("chatapi: the call's send deadline passed before it left; not sent")

type sendDeadlineKey struct{}

// WithSendDeadline returns a context whose calls must leave by t or not at
// all. A zero t returns ctx unchanged.
//
// With the HTTP client New makes by default, the check runs as the request
// is written to a kept-alive connection, in the same write: a call caught
// late ends with ErrSendDeadline, and the client closes that connection. A
// call that has to open a new connection is sent whenever the connection
// is ready: refusing it would close that connection too, and over a
// network whose handshake takes longer than the deadline's slack every call
// would dial, be refused and close again. With an HTTP client of the
// caller's own (Config.HTTPClient), over HTTP/2 or through a SOCKS5 proxy,
// the check runs only just before the request is handed to the client.
// The repeat after a UserSig refusal is not held to the deadline: it
// answers for a call already sent in its slot.
func WithSendDeadline(ctx context.Context, t time.Time) context.Context {
	if t.IsZero() {
		return ctx
	}
	return context.WithValue(ctx, sendDeadlineKey{}, t)
}

// SendDeadline returns the send deadline WithSendDeadline put in ctx.
func SendDeadline(ctx context.Context) (time.Time, bool) {
	t, ok := ctx.Value(sendDeadlineKey{}).(time.Time)
	return t, ok && !t.IsZero()
}

// sendBy is one request's send deadline, armed on the connection that
// request is written to.
type sendBy struct {
	by      time.Time
	refused atomic.Bool // the connection refused the write
}

// sendByConn is a connection that refuses the first write after its armed
// deadline, writing nothing. An HTTP/1.x transport writes a request of up
// to its buffer's size (4 KB) in one write, so the refusal stops the whole
// request.
type sendByConn struct {
	net.Conn
	armed atomic.Pointer[sendBy]
}

func (c *sendByConn) Write(p []byte) (int, error) {
	if s := c.armed.Swap(nil); s != nil && time.Now().After(s.by) {
		s.refused.Store(true)
		return 0, ErrSendDeadline
	}
	return c.Conn.Write(p)
}

// dialSendBy wraps the connections dial makes as sendByConns.
func dialSendBy(dial func(ctx context.Context, network, addr string) (net.Conn, error)) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return &sendByConn{Conn: c}, nil
	}
}

// withSendBy arms s (nil: disarms) on the connection the request with ctx
// gets, when that is a kept-alive sendByConn carrying HTTP/1.x.
//
// A connection dialed for the request is never armed. Its dial came after
// the call's slot, so over any real network (a handshake of tens of
// milliseconds) the call would always be late; refusing it would close the
// new connection, and the next call would dial again and be refused again,
// for ever. Such a call goes out late, as calls on new connections always
// did; the worker's ColdStart leaves slots empty for them.
func withSendBy(ctx context.Context, s *sendBy) context.Context {
	return httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{GotConn: func(info httptrace.GotConnInfo) {
		if !info.Reused {
			s = nil
		}
		conn := info.Conn
		if tc, ok := conn.(*tls.Conn); ok && tc.ConnectionState().NegotiatedProtocol == "h2" {
			return // one connection carries many requests at once
		}
		// Through TLS, and TLS to an HTTPS proxy, down to the dialed
		// connection. (Through a SOCKS5 proxy net/http wraps it in a type
		// of its own: nothing is armed there.)
		for {
			switch c := conn.(type) {
			case *sendByConn:
				c.armed.Store(s)
				return
			case interface{ NetConn() net.Conn }:
				conn = c.NetConn()
			default:
				return
			}
		}
	}})
}
