// Package rxstamp tells an HTTP handler when the kernel received its
// request, as opposed to when the server's process got round to reading it.
//
// A server that shares its CPUs with its clients can be kept off them for
// tens of milliseconds; it then reads the calls of those milliseconds in one
// burst, and by its own clock they arrived bunched. The kernel stamps each
// segment as it comes in (SO_TIMESTAMPNS), so by those stamps the calls keep
// the spacing they travelled with. On loopback the kernel takes the stamp
// while the sender's write hands the segment over, so there the stamp is the
// time the client sent it.
//
// Use it in three places: Wrap (or Listen) for the listener, ConnContext as
// the http.Server's ConnContext, and Received in the handler:
//
//	ln, err := rxstamp.Listen("tcp", "127.0.0.1:9000")
//	srv := &http.Server{Handler: h, ConnContext: rxstamp.ConnContext}
//	srv.Serve(ln)
//	// in h: at, ok := rxstamp.Received(r.Context())
//
// Stamps are kept on Linux. Elsewhere, or for a connection whose socket
// refuses the option, connections are left as they are and Received reports
// false. Linux turns stamping on system-wide a moment after the first
// socket asks for it, so the first segments a process receives may carry no
// stamp; for those Received reports false, and a caller falls back to its
// own clock.
package rxstamp

import (
	"context"
	"net"
	"sync/atomic"
	"time"
)

// Listen announces on a local network address, as net.Listen does, and
// wraps the listener with Wrap.
func Listen(network, address string) (net.Listener, error) {
	ln, err := net.Listen(network, address)
	if err != nil {
		return nil, err
	}
	return Wrap(ln), nil
}

// Wrap returns a listener whose TCP connections record the kernel's receive
// time of the data each Read returns. Other connections pass through as
// they are. It turns stamps on for the listening socket too, so that data
// which arrives before a connection is accepted is stamped as well.
func Wrap(ln net.Listener) net.Listener {
	stampListener(ln)
	return listener{ln}
}

type listener struct{ net.Listener }

// Accept waits for the next connection and turns receive stamps on for it
// where the kernel allows.
func (l listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return stamped(c), nil
}

// stamps holds a connection's latest kernel receive time. The conn that
// records it and the contexts that read it share it.
type stamps struct {
	last atomic.Int64 // Unix nanoseconds; 0 before the first stamped read
}

func (s *stamps) latest() (time.Time, bool) {
	ns := s.last.Load()
	if ns == 0 {
		return time.Time{}, false
	}
	return time.Unix(0, ns), true
}

// stampsOf is what ConnContext looks for on a connection.
type stampsOf interface{ rxStamps() *stamps }

type ctxKey struct{}

// ConnContext, set as an http.Server's ConnContext, makes a stamped
// connection's receive times reachable from its requests' contexts. It
// leaves the context of any other connection unchanged.
func ConnContext(ctx context.Context, c net.Conn) context.Context {
	if s, ok := c.(stampsOf); ok {
		return context.WithValue(ctx, ctxKey{}, s.rxStamps())
	}
	return ctx
}

// Received reports when the kernel received the latest bytes the server
// read from the connection of the request whose context is ctx. Go's HTTP
// clients write a small request in one segment and wait for its answer
// before the next, so for such a request, read in the handler before its
// body, that is when the request arrived. ok is false when the connection
// keeps no stamps (see the package doc) or has read nothing yet.
func Received(ctx context.Context) (at time.Time, ok bool) {
	s, _ := ctx.Value(ctxKey{}).(*stamps)
	if s == nil {
		return time.Time{}, false
	}
	return s.latest()
}
