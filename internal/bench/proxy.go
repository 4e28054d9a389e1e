package bench

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
)

// countingProxy is a TCP proxy in front of Redis that counts the commands
// its clients send. The workers connect through it, so the count is theirs
// alone even when other programs share the Redis server (INFO's counters are
// server-wide). It counts what crosses the wire: a pipeline of n commands
// is n, an EVALSHA is 1 whatever its script does, and MULTI and EXEC are
// commands of their own.
type countingProxy struct {
	ln       net.Listener
	upstream string

	total  atomic.Int64
	mu     sync.Mutex
	byCmd  map[string]int64
	conns  map[net.Conn]struct{}
	closed bool
	wg     sync.WaitGroup
}

// newCountingProxy listens on a free loopback port and forwards every
// connection to upstream.
func newCountingProxy(upstream string) (*countingProxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &countingProxy{ln: ln, upstream: upstream, byCmd: map[string]int64{}, conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// Addr is the proxy's HOST:PORT.
func (p *countingProxy) Addr() string { return p.ln.Addr().String() }

// Total is the number of commands counted so far.
func (p *countingProxy) Total() int64 { return p.total.Load() }

// ByCommand returns a copy of the counts per lower-case command name.
func (p *countingProxy) ByCommand() map[string]int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return maps.Clone(p.byCmd)
}

// Close stops listening, cuts every connection and waits for the copying
// goroutines to end.
func (p *countingProxy) Close() {
	p.ln.Close()
	p.mu.Lock()
	p.closed = true
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

// track adds (or removes) a connection to those Close cuts. Adding after
// Close closes the connection instead.
func (p *countingProxy) track(c net.Conn, add bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case !add:
		delete(p.conns, c)
	case p.closed:
		c.Close()
	default:
		p.conns[c] = struct{}{}
	}
}

func (p *countingProxy) accept() {
	defer p.wg.Done()
	for {
		client, err := p.ln.Accept()
		if err != nil {
			return
		}
		server, err := net.Dial("tcp", p.upstream)
		if err != nil {
			client.Close()
			continue
		}
		p.track(client, true)
		p.track(server, true)
		p.wg.Add(2)
		go func() { // server -> client: answers, copied as they are
			defer p.wg.Done()
			_, _ = io.Copy(client, server)
			client.Close()
			server.Close()
		}()
		go func() { // client -> server: commands, counted
			defer p.wg.Done()
			_ = p.forward(client, server)
			client.Close()
			server.Close()
			p.track(client, false)
			p.track(server, false)
		}()
	}
}

// forward copies commands from client to server one at a time, counting
// each, and flushes whenever the client has nothing more buffered so that
// pipelines stay pipelines.
func (p *countingProxy) forward(client io.Reader, server io.Writer) error {
	br := bufio.NewReaderSize(client, 64<<10)
	bw := bufio.NewWriterSize(server, 64<<10)
	local := map[string]int64{}
	publish := func() {
		p.mu.Lock()
		for k, v := range local {
			p.byCmd[k] += v
		}
		p.mu.Unlock()
		clear(local)
	}
	defer publish()
	for {
		name, err := copyCommand(br, bw)
		if err != nil {
			bw.Flush()
			return err
		}
		p.total.Add(1)
		local[name]++
		if br.Buffered() == 0 {
			publish()
			if err := bw.Flush(); err != nil {
				return err
			}
		}
	}
}

// maxNameLen bounds the command name kept for counting.
const maxNameLen = 32

// copyCommand copies one RESP command (an array of bulk strings, or an
// inline command line) from br to w and returns its lower-case name.
func copyCommand(br *bufio.Reader, w *bufio.Writer) (string, error) {
	line, err := br.ReadSlice('\n')
	if err != nil {
		if errors.Is(err, bufio.ErrBufferFull) {
			return "", errors.New("resp: header line too long")
		}
		return "", err
	}
	if len(line) == 0 || line[0] != '*' {
		// Inline command: the line is the whole command.
		name := string(bytes.ToLower(firstWord(line)))
		_, err := w.Write(line)
		return name, err
	}
	n, err := respInt(line[1:])
	if err != nil {
		return "", err
	}
	if _, err := w.Write(line); err != nil {
		return "", err
	}
	name := ""
	for i := 0; i < n; i++ {
		hdr, err := br.ReadSlice('\n')
		if err != nil {
			return "", err
		}
		if len(hdr) == 0 || hdr[0] != '$' {
			return "", fmt.Errorf("resp: want a bulk string, got %q", hdr)
		}
		size, err := respInt(hdr[1:])
		if err != nil {
			return "", err
		}
		if _, err := w.Write(hdr); err != nil {
			return "", err
		}
		if size < 0 {
			continue
		}
		if i == 0 && size <= maxNameLen {
			b, err := br.Peek(size)
			if err != nil {
				return "", err
			}
			name = string(bytes.ToLower(b))
		}
		if _, err := io.CopyN(w, br, int64(size)+2); err != nil {
			return "", err
		}
	}
	return name, nil
}

func respInt(b []byte) (int, error) {
	b = bytes.TrimRight(b, "\r\n")
	n, err := strconv.Atoi(string(b))
	if err != nil {
		return 0, fmt.Errorf("resp: bad length %q", b)
	}
	return n, nil
}

func firstWord(line []byte) []byte {
	f := bytes.Fields(line)
	if len(f) == 0 {
		return nil
	}
	return f[0]
}
