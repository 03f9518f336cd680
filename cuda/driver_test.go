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

// TestFreeIsStreamOrdered frees x right after queuing kernels that read it,
// then allocates and fills memory of x's size, which the driver may place
// where x was: the kernels must still read x's values (Free is ordered
// after them), and nothing faults.
func TestFreeIsStreamOrdered(t *testing.T) {
	const n, launches = 1 << 20, 64
	y, err := Alloc(n * 4)
	if err != nil {
		t.Fatal(err)
	}
	defer Free(y)
	x, err := Alloc(n * 4)
	if err != nil {
		t.Fatal(err)
	}
	if err := Memset32(y, 0, n); err != nil {
		t.Fatal(err)
	}
	if err := Memset32(x, math.Float32bits(1), n); err != nil {
		t.Fatal(err)
	}
	for range launches {
		var a Args
		a.Ptr(y).Ptr(x).Int64(n).Float(1)
		if err := Launch("lora_axpy", Dim3{X: 256, Y: 1, Z: 1}, Dim3{X: 256, Y: 1, Z: 1}, 0, &a); err != nil {
			t.Fatal(err)
		}
	}
	if err := Free(x); err != nil {
		t.Fatal(err)
	}
	z, err := Alloc(n * 4)
	if err != nil {
		t.Fatal(err)
	}
	defer Free(z)
	if err := Memset32(z, math.Float32bits(-1000), n); err != nil {
		t.Fatal(err)
	}
	got := make([]float32, n)
	if err := CopyDtoH(unsafe.Pointer(&got[0]), y, n*4); err != nil {
		t.Fatal(err)
	}
	for i, v := range got {
		if v != launches {
			t.Fatalf("y[%d] = %v after %d launches of y += x with x = 1 freed behind them, want %d", i, v, launches, launches)
		}
	}
	t.Logf("Free queues cuMemFreeAsync: %v", asyncFree)
}

// TestSmallCopyIsStreamOrdered copies into y, through the upload ring,
// right after queuing kernels that read y, many times over so that the
// ring wraps: each kernel must read y as it was before the copy queued
// after it.
func TestSmallCopyIsStreamOrdered(t *testing.T) {
	const n, rounds = 4096, 2 * uploadBytes / (4 * 4096)
	y, err := Alloc(n * 4)
	if err != nil {
		t.Fatal(err)
	}
	defer Free(y)
	z, err := Alloc(n * 4)
	if err != nil {
		t.Fatal(err)
	}
	defer Free(z)
	if err := Memset32(y, 0, n); err != nil {
		t.Fatal(err)
	}
	if err := Memset32(z, 0, n); err != nil {
		t.Fatal(err)
	}
	src := make([]float32, n)
	for k := 1; k <= rounds; k++ {
		var a Args
		a.Ptr(z).Ptr(y).Int64(n).Float(1) // z += y, y = k−1
		if err := Launch("lora_axpy", Dim3{X: 16, Y: 1, Z: 1}, Dim3{X: 256, Y: 1, Z: 1}, 0, &a); err != nil {
			t.Fatal(err)
		}
		for i := range src {
			src[i] = float32(k)
		}
		if err := CopyHtoD(y, unsafe.Pointer(&src[0]), n*4); err != nil {
			t.Fatal(err)
		}
	}
	got := make([]float32, n)
	if err := CopyDtoH(unsafe.Pointer(&got[0]), z, n*4); err != nil {
		t.Fatal(err)
	}
	want := float32(rounds * (rounds - 1) / 2) // 0 + 1 + … + rounds−1
	for i, v := range got {
		if v != want {
			t.Fatalf("z[%d] = %v, want %v: a copy ran before the kernel queued ahead of it", i, v, want)
		}
	}
}
