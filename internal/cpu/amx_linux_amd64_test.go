//go:build !purego

package cpu

import (
	"syscall"
	"testing"
	"unsafe"
)

// TestAMXPermission checks that the process holds the AMX tiles exactly
// when it runs the AMX kernel: asked for at level AMX, never below it.
func TestAMXPermission(t *testing.T) {
	const archGetXcompPerm = 0x1022
	var perm uint64
	if _, _, e := syscall.RawSyscall(syscall.SYS_ARCH_PRCTL, archGetXcompPerm, uintptr(unsafe.Pointer(&perm)), 0); e != 0 {
		t.Skipf("arch_prctl(ARCH_GET_XCOMP_PERM): %v", e)
	}
	if got := perm&(1<<xfeatureXtiledata) != 0; got != useAMX {
		t.Errorf("level %v: the AMX tiles granted %v, the AMX kernel on %v", CurrentLevel(), got, useAMX)
	}
}
