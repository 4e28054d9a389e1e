package testenv

import (
	"bytes"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
)

// LostReplyProxy is a TCP proxy in front of a Redis that can lose the reply
// to one command: the command reaches Redis and takes effect, and the
// client sees its connection close instead of the answer, as it would when
// Redis stalls past the client's read timeout. It is how tests show what a
// retried write does when the first try went through.
type LostReplyProxy struct {
	Addr   string
	target string
	armed  atomic.Pointer[[]byte] // drop the reply to the next command holding this
	lost   atomic.Int64
}

// NewLostReplyProxy listens on 127.0.0.1 and forwards to target until the
// test ends.
func NewLostReplyProxy(t testing.TB, target string) *LostReplyProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &LostReplyProxy{Addr: ln.Addr().String(), target: target}
	var wg sync.WaitGroup
	t.Cleanup(func() { _ = ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() { p.serve(c) })
		}
	})
	return p
}

// LoseReplyTo arms the proxy: the reply to the next command whose bytes
// contain marker, in any case (e.g. "EVALSHA"), is lost once.
func (p *LostReplyProxy) LoseReplyTo(marker string) {
	m := bytes.ToLower([]byte(marker))
	p.armed.Store(&m)
}

// Lost reports how many replies the proxy has dropped.
func (p *LostReplyProxy) Lost() int64 { return p.lost.Load() }

func (p *LostReplyProxy) serve(client net.Conn) {
	defer client.Close()
	server, err := net.Dial("tcp", p.target)
	if err != nil {
		return
	}
	defer server.Close()
	replies := make(chan struct{})
	go func() {
		defer close(replies)
		_, _ = io.Copy(client, server) // ends when a write to client fails
		_ = client.Close()
	}()
	buf := make([]byte, 64<<10)
	for {
		n, err := client.Read(buf)
		if n > 0 {
			chunk := buf[:n]
			if m := p.armed.Load(); m != nil && bytes.Contains(bytes.ToLower(chunk), *m) && p.armed.CompareAndSwap(m, nil) {
				// Cut the client off, then let the command run: Redis's
				// answer reaches the reply copier, which fails to pass it
				// on to the closed client and ends. Only then is the
				// command known to have run.
				_ = client.Close()
				if _, err := server.Write(chunk); err == nil {
					<-replies
				}
				p.lost.Add(1)
				return
			}
			if _, werr := server.Write(chunk); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}
