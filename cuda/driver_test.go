//go:build cuda

package cuda

import (
	"fmt"
	"math"
	"testing"
	"unsafe"
)

// These tests need a GPU; the GPU bundle runs them (cuda.test).

// TestLaunchAllocatesNothing checks that a launch allocates nothing on the
// host, Go's heap or C's: the kernel's parameters go to the driver by value.
func TestLaunchAllocatesNothing(t *testing.T) {
	const n = 256
	y, err := Alloc(n * 4)
	if err != nil {
		t.Fatal(err)
	}
	defer Free(y)
	x, err := Alloc(n * 4)
	if err != nil {
		t.Fatal(err)
	}
	defer Free(x)
	if err := Memset32(y, math.Float32bits(1), n); err != nil {
		t.Fatal(err)
	}
	if err := Memset32(x, math.Float32bits(2), n); err != nil {
		t.Fatal(err)
	}
	launch := func() {
		var a Args
		a.Ptr(y).Ptr(x).Int64(n).Float(0.5)
		if err := Launch("lora_axpy", Dim3{1, 1, 1}, Dim3{32, 1, 1}, 0, &a); err != nil {
			t.Fatal(err)
		}
	}
	launch() // looks the kernel up once
	allocs := testing.AllocsPerRun(100, launch)
	if allocs != 0 {
		t.Errorf("a launch made %v allocations, want 0", allocs)
	}
	got := make([]float32, n)
	if err := CopyDtoH(unsafe.Pointer(&got[0]), y, n*4); err != nil {
		t.Fatal(err)
	}
	// 1 + 102 launches of y += 0.5·2 (AllocsPerRun runs once more to warm up).
	for i, v := range got {
		if v != 103 {
			t.Fatalf("y[%d] = %v after 103 launches of y += 0.5·2 from 1, want 103", i, v)
		}
	}
}

// TestCopyRoundTrip copies sizes around the staging buffer's pieces to the
// device and back, at offsets, and checks every byte and that the bytes
// around the copied range stay as they were.
func TestCopyRoundTrip(t *testing.T) {
	const size = 3*stageHalf + 4096
	buf, err := Alloc(size)
	if err != nil {
		t.Fatal(err)
	}
	defer Free(buf)
	for _, n := range []int64{1, 4, 4095, stageHalf - 1, stageHalf, stageHalf + 1, 2 * stageHalf, 2*stageHalf + 5, 3 * stageHalf} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			const off = 1024
			if err := Memset32(buf, 0xA5A5A5A5, size/4); err != nil {
				t.Fatal(err)
			}
			src := make([]byte, n)
			for i := range src {
				src[i] = byte(i*31 + int(n))
			}
			if err := CopyHtoD(buf+off, unsafe.Pointer(&src[0]), n); err != nil {
				t.Fatal(err)
			}
			for i := range src {
				src[i] = 0 // src is free once CopyHtoD returns
			}
			all := make([]byte, size)
			if err := CopyDtoH(unsafe.Pointer(&all[0]), buf, size); err != nil {
				t.Fatal(err)
			}
			for i, v := range all {
				want := byte(0xA5)
				if int64(i) >= off && int64(i) < off+n {
					want = byte((int64(i)-off)*31 + n)
				}
				if v != want {
					t.Fatalf("byte %d is %#x, want %#x", i, v, want)
				}
			}
		})
	}
}
