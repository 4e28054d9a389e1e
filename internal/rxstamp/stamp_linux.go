package rxstamp

import (
	"io"
	"net"
	"os"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// stampedConn reads with recvmsg so that each Read also gets the kernel's
// receive stamp of the last segment it returns.
type stampedConn struct {
	net.Conn
	raw syscall.RawConn
	s   stamps
}

func (c *stampedConn) rxStamps() *stamps { return &c.s }

// CloseWrite shuts down the writing side, as *net.TCPConn's does: net/http
// calls it to send a FIN before it closes a connection after an error.
func (c *stampedConn) CloseWrite() error { return c.Conn.(*net.TCPConn).CloseWrite() }

// stampListener turns SO_TIMESTAMPNS on for a TCP listener; the sockets it
// accepts inherit it. A listener that refuses is left as it is.
func stampListener(ln net.Listener) {
	if tl, ok := ln.(*net.TCPListener); ok {
		if raw, err := tl.SyscallConn(); err == nil {
			setStamps(raw)
		}
	}
}

// setStamps turns SO_TIMESTAMPNS on for a socket and reports whether it did.
func setStamps(raw syscall.RawConn) bool {
	var serr error
	err := raw.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1)
	})
	return err == nil && serr == nil
}

// stamped turns SO_TIMESTAMPNS on for a TCP connection and returns it
// wrapped; any other connection, or one that refuses, comes back unchanged.
func stamped(c net.Conn) net.Conn {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return c
	}
	raw, err := tc.SyscallConn()
	if err != nil {
		return c
	}
	if !setStamps(raw) {
		return c
	}
	return &stampedConn{Conn: c, raw: raw}
}

// oobSize holds one SCM_TIMESTAMPNS message, with room to spare.
var oobSize = unix.CmsgSpace(int(unsafe.Sizeof(unix.Timespec{}))) * 2

// Read reads as net.Conn's Read does (deadlines included) and records the
// receive stamp that comes with the data.
func (c *stampedConn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	oob := make([]byte, oobSize)
	var n, oobn int
	var rerr error
	err := c.raw.Read(func(fd uintptr) bool {
		for {
			n, oobn, _, _, rerr = unix.Recvmsg(int(fd), p, oob, 0)
			if rerr != unix.EINTR {
				return rerr != unix.EAGAIN
			}
		}
	})
	if err == nil && rerr != nil {
		err = &net.OpError{Op: "read", Net: c.LocalAddr().Network(), Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: os.NewSyscallError("recvmsg", rerr)}
	}
	if err != nil {
		return 0, err
	}
	if n == 0 {
		return 0, io.EOF
	}
	// Data without a stamp clears the last one, so that a request is never
	// dated by an earlier request's arrival.
	var at int64
	if t, ok := receiveStamp(oob[:oobn]); ok {
		at = t.UnixNano()
	}
	c.s.last.Store(at)
	return n, nil
}

// receiveStamp finds the SCM_TIMESTAMPNS message among control messages.
func receiveStamp(oob []byte) (time.Time, bool) {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return time.Time{}, false
	}
	for _, m := range msgs {
		if m.Header.Level == unix.SOL_SOCKET && m.Header.Type == unix.SCM_TIMESTAMPNS && len(m.Data) >= int(unsafe.Sizeof(unix.Timespec{})) {
			ts := (*unix.Timespec)(unsafe.Pointer(&m.Data[0]))
			return time.Unix(ts.Unix()), true
		}
	}
	return time.Time{}, false
}
