//go:build !linux

package testenv

import "os/exec"

// setDeathSignal is a no-op where the kernel has no parent-death signal;
// test cleanups still kill every child.
func setDeathSignal(*exec.Cmd) {}
