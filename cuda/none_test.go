//go:build !cuda && !cudaemu

package cuda

import (
	"strings"
	"testing"
)

// TestNoBackend checks that, without a GPU backend, every function that
// would use a device returns an error that says how to get one, and that
// Launch still checks its arguments.
func TestNoBackend(t *testing.T) {
	var a Args
	a.Ptr(0).Ptr(0).Int64(1).Float(1)
	one := Dim3{X: 1, Y: 1, Z: 1}
	_, errAlloc := Alloc(4)
	_, errEvent := NewEvent()
	var e Event
	_, errSince := e.Since(&e)
	for name, err := range map[string]error{
		"Init":     Init(),
		"Alloc":    errAlloc,
		"Free":     Free(1),
		"Memset32": Memset32(1, 0, 1),
		"CopyHtoD": CopyHtoD(1, nil, 4),
		"CopyDtoH": CopyDtoH(nil, 1, 4),
		"Launch":   Launch("lora_axpy", one, one, 0, &a),
		"Sync":     Sync(),
		"NewEvent": errEvent,
		"Record":   e.Record(),
		"Since":    errSince,
	} {
		if err == nil || !strings.Contains(err.Error(), "build with -tags cuda or cudaemu") {
			t.Errorf("%s: %v, want the error that says to build with -tags cuda or cudaemu", name, err)
		}
	}
	if err := Free(0); err != nil {
		t.Errorf("Free(0): %v", err)
	}
	if !strings.Contains(DeviceName(), "no device") || PeakBandwidth() != 0 || L2Bytes() != 0 || Name != "none" {
		t.Errorf("DeviceName %q, PeakBandwidth %g, L2Bytes %d, Name %q", DeviceName(), PeakBandwidth(), L2Bytes(), Name)
	}
	var short Args
	short.Ptr(0)
	if err := Launch("lora_axpy", one, one, 0, &short); err == nil || !strings.Contains(err.Error(), "1 argument packed, the kernel takes 4") {
		t.Errorf("Launch with one argument of four: %v", err)
	}
}
