//go:build cudaemu

package cuda

import (
	"errors"
	"math"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"github.com/golora/lora/internal/reftest"
	"github.com/golora/lora/kernels"
)

// The stream order of Free and CopyHtoD on the emulator. Each test holds
// the stream with emutest_wait, which waits for a flag that the host sets,
// so that what it queues behind is still queued when the call under test
// returns: the order is checked, not the timing.

// holder is a kernel that holds the stream: emutest_wait, waiting for a
// flag that the host sets.
type holder struct {
	t *testing.T
	p Ptr // the flag, then the word the kernel writes: 1 if it saw the flag
}

// hold queues emutest_wait on a fresh flag, without waiting for the
// stream: the flag, which nothing queued names yet, is cleared through
// host memory, which device memory is here.
func hold(t *testing.T) holder {
	t.Helper()
	p, err := Alloc(8)
	if err != nil {
		t.Fatal(err)
	}
	atomic.StoreInt32((*int32)(ptr(p)), 0)
	atomic.StoreInt32((*int32)(ptr(p+4)), 0)
	var a Args
	a.Ptr(p).Ptr(p + 4)
	launchTest(t, "emutest_wait", 32, &a)
	return holder{t, p}
}

// release sets the flag.
func (h holder) release() {
	atomic.StoreInt32((*int32)(ptr(h.p)), 1) // device memory is host memory here
}

// saw waits for the stream, frees the flag and reports whether the kernel
// saw the flag set: false when it gave up after about 5 seconds, which
// means the host waited for the stream between hold and release.
func (h holder) saw() bool {
	h.t.Helper()
	var seen int32
	if err := CopyDtoH(unsafe.Pointer(&seen), h.p+4, 4); err != nil {
		h.t.Fatal(err)
	}
	if err := Free(h.p); err != nil {
		h.t.Fatal(err)
	}
	return seen == 1
}

// filled allocates n floats holding v.
func filled(t *testing.T, n int, v float32) Ptr {
	t.Helper()
	p, err := Alloc(int64(4 * n))
	if err != nil {
		t.Fatal(err)
	}
	if err := Memset32(p, math.Float32bits(v), int64(n)); err != nil {
		t.Fatal(err)
	}
	return p
}

// axpy queues y += alpha·x over n floats.
func axpy(t *testing.T, y, x Ptr, n int, alpha float32) {
	t.Helper()
	var a Args
	a.Ptr(y).Ptr(x).Int64(int64(n)).Float(alpha)
	if err := Launch("lora_axpy", Dim3{X: 1, Y: 1, Z: 1}, Dim3{X: kernels.AxpyThreads, Y: 1, Z: 1}, 0, &a); err != nil {
		t.Fatal(err)
	}
}

// read copies n floats from p.
func read(t *testing.T, p Ptr, n int) []float32 {
	t.Helper()
	got := make([]float32, n)
	if err := CopyDtoH(unsafe.Pointer(&got[0]), p, int64(4*n)); err != nil {
		t.Fatal(err)
	}
	return got
}

// TestFreeIsStreamOrdered frees x right after queuing a kernel that reads
// it, behind a held stream: Free returns without waiting for the stream,
// the kernel still reads x's values, and when the stream reaches the free
// the memory holds the 0xffa5a5a5 pattern (which a kernel reading it
// through an address held in device memory would compute NaN from).
func TestFreeIsStreamOrdered(t *testing.T) {
	const n = 300
	y, x := filled(t, n, 1), filled(t, n, 2)
	defer Free(y)
	h := hold(t)
	axpy(t, y, x, n, 0.5) // y = 1 + 0.5·2, queued behind the hold
	if err := Free(x); err != nil {
		t.Fatal(err)
	}
	// A second hold behind the free: while it waits, the free has run and
	// the memory is still the emulator's, so the test may look at it.
	h2 := hold(t)
	h.release()
	word := (*uint32)(ptr(x))
	for deadline := time.Now().Add(5 * time.Second); atomic.LoadUint32(word) != 0xffa5a5a5 && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	pattern := atomic.LoadUint32(word)
	h2.release()
	if !h.saw() {
		t.Fatal("the kernel holding the stream never saw its flag: Free waited for the stream")
	}
	if !h2.saw() {
		t.Fatal("the second hold never saw its flag")
	}
	if pattern != 0xffa5a5a5 {
		t.Errorf("freed memory holds %#x when the stream has passed the free, want the pattern 0xffa5a5a5", pattern)
	}
	for i, v := range read(t, y, n) {
		if v != 2 {
			t.Fatalf("y[%d] = %v, want 1 + 0.5·2 = 2: the kernel queued before Free did not read x", i, v)
		}
	}
	if err := Sync(); err != nil {
		t.Fatal(err)
	}
}

// TestFreeNowFaults checks, in a child process (a fault is sticky), that a
// free that does not wait for the stream, of memory a queued kernel reads,
// is a device fault that names the kernel; and, in this process, that the
// same free after the host waited for the stream is none.
func TestFreeNowFaults(t *testing.T) {
	const n = 64
	if os.Getenv("LORA_TEST_FREE_NOW") == "" {
		y, x := filled(t, n, 1), filled(t, n, 2)
		defer Free(y)
		axpy(t, y, x, n, 1)
		if err := Sync(); err != nil {
			t.Fatal(err)
		}
		if err := freeNow(x); err != nil {
			t.Fatalf("a free that does not wait, after Sync: %v", err)
		}
		reftest.RunChild(t, "LORA_TEST_FREE_NOW=1")
		return
	}
	y, x := filled(t, n, 1), filled(t, n, 2)
	h := hold(t)
	axpy(t, y, x, n, 1)
	err := freeNow(x)
	for _, want := range []string{"illegal address", "lora_axpy", "queued before the free"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("a free that does not wait, of memory a queued kernel reads: %v, want %q", err, want)
		}
	}
	if Fault() == nil || !errors.Is(err, Fault()) {
		t.Errorf("the use after free is not the device's fault: %v, Fault %v", err, Fault())
	}
	h.release()
}

// TestCopyHtoDIsStreamOrdered copies into y right after queuing a kernel
// that reads y, behind a held stream: CopyHtoD returns without waiting,
// its source may be reused at once, the kernel reads y as it was, and y
// holds the copy afterwards.
func TestCopyHtoDIsStreamOrdered(t *testing.T) {
	const n = 100
	z, y := filled(t, n, 1), filled(t, n, 3)
	defer Free(z)
	defer Free(y)
	h := hold(t)
	axpy(t, z, y, n, 1) // z = 1 + 3, queued behind the hold
	src := make([]float32, n)
	for i := range src {
		src[i] = float32(i)
	}
	if err := CopyHtoD(y, unsafe.Pointer(&src[0]), 4*n); err != nil {
		t.Fatal(err)
	}
	clear(src) // src is the caller's again once CopyHtoD returns
	h.release()
	if !h.saw() {
		t.Fatal("the kernel holding the stream never saw its flag: CopyHtoD waited for the stream")
	}
	for i, v := range read(t, z, n) {
		if v != 4 {
			t.Fatalf("z[%d] = %v, want 1 + 3: the copy queued after the kernel ran before it", i, v)
		}
	}
	for i, v := range read(t, y, n) {
		if v != float32(i) {
			t.Fatalf("y[%d] = %v after the copy, want %d", i, v, i)
		}
	}
}
