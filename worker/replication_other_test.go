//go:build !linux

package worker_test

import "os/exec"

// dieWithTest does nothing here: only Linux kills a child with its parent.
// Cleanup still kills the servers when the test ends normally.
func dieWithTest(*exec.Cmd) {}
