//go:build !linux && !purego

package cpu

// amxSupported and amxPermitted are false: the AMX tiles are used on Linux
// only, where the process asks the kernel for them.
func amxSupported() bool { return false }
func amxPermitted() bool { return false }
