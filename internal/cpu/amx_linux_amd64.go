//go:build !purego

package cpu

import (
	"sync"
	"syscall"
	"unsafe"
)

// Linux lets a process use the AMX tile data only once it has asked
// (arch_prctl ARCH_REQ_XCOMP_PERM for XFEATURE_XTILEDATA). The kernel's
// support is read without asking (ARCH_GET_XCOMP_SUPP); the request is
// made once, for the whole process, only when the level chosen is AMX:
// a process granted the tiles gets larger signal frames.
const (
	archGetXcompSupp  = 0x1021
	archReqXcompPerm  = 0x1023
	xfeatureXtiledata = 18
)

var amxSupp = sync.OnceValue(func() bool {
	var supp uint64
	if _, _, e := syscall.RawSyscall(syscall.SYS_ARCH_PRCTL, archGetXcompSupp, uintptr(unsafe.Pointer(&supp)), 0); e != 0 {
		return false
	}
	return supp&(1<<xfeatureXtiledata) != 0
})

var amxPerm = sync.OnceValue(func() bool {
	if !amxSupp() {
		return false
	}
	_, _, e := syscall.RawSyscall(syscall.SYS_ARCH_PRCTL, archReqXcompPerm, xfeatureXtiledata, 0)
	return e == 0
})

// amxSupported reports whether the operating system supports the AMX
// tiles, without asking for them.
func amxSupported() bool { return amxSupp() }

// amxPermitted reports whether the operating system lets this process use
// the AMX tiles, asking for them the first time.
func amxPermitted() bool { return amxPerm() }
