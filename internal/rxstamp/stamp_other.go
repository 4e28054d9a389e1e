//go:build !linux

package rxstamp

import "net"

// stamped leaves connections unchanged where the kernel keeps no receive
// stamps this package can read.
func stamped(c net.Conn) net.Conn { return c }

// stampListener does nothing where stamps are not kept.
func stampListener(net.Listener) {}
