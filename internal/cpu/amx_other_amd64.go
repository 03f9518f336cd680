//go:build !linux && !purego

package cpu

// amxPermitted is false: the AMX tiles are used on Linux only, where the
// process asks the kernel for them.
func amxPermitted() bool { return false }
