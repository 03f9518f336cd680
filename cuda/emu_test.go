//go:build cudaemu

package cuda

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"github.com/golora/lora/internal/reftest"
	"github.com/golora/lora/kernels"
)

// TestParamsMatchSignatures checks kernels.Params, the table Launch checks
// arguments against, against the signatures the compiler saw: every kernel
// of the module is in the table with its number of parameters, and the
// table names no other.
func TestParamsMatchSignatures(t *testing.T) {
	var names []string
	for _, k := range emuKernels() {
		if !emuOwn(k) { // the emulator's own tests and operations
			names = append(names, k)
		}
	}
	for _, k := range names {
		if want, got := emuKernelArgs(k), kernels.Params[k]; got != want {
			t.Errorf("kernels.Params[%q] = %d, the kernel's signature has %d parameters", k, got, want)
		}
	}
	for k := range kernels.Params {
		if !slices.Contains(names, k) {
			t.Errorf("kernels.Params names %q, which the module does not have", k)
		}
	}
}

// TestLaunchArgumentCount launches lora_axpy (4 parameters) with too few and
// too many arguments: Launch refuses both with an error that names the
// kernel and the two counts, and so does the emulator itself when the Go
// check is bypassed, reading no argument slot past those packed.
func TestLaunchArgumentCount(t *testing.T) {
	y, err := Alloc(16)
	if err != nil {
		t.Fatal(err)
	}
	defer Free(y)
	if err := Memset32(y, 0x3f800000, 4); err != nil { // 1.0f
		t.Fatal(err)
	}
	one, block := Dim3{X: 1, Y: 1, Z: 1}, Dim3{X: kernels.AxpyThreads, Y: 1, Z: 1}
	for _, c := range []struct {
		name string
		pack func(a *Args)
		n    int
	}{
		{"none", func(a *Args) {}, 0},
		{"too few", func(a *Args) { a.Ptr(y).Ptr(y).Int64(4) }, 3},
		{"too many", func(a *Args) { a.Ptr(y).Ptr(y).Int64(4).Float(1).Float(1) }, 5},
	} {
		var a Args
		c.pack(&a)
		want := "launch lora_axpy: " + plural(c.n, "argument") + " packed, the kernel takes 4"
		if err := checkLaunch("lora_axpy", one, block, 0, &a); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: checkLaunch: %v, want %q", c.name, err, want)
		}
		if err := Launch("lora_axpy", one, block, 0, &a); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: Launch: %v, want %q", c.name, err, want)
		}
		mu.Lock()
		err := emuLaunch("lora_axpy", one, block, 0, &a)
		mu.Unlock()
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: the emulator: %v, want %q", c.name, err, want)
		}
	}
	var got [4]float32
	if err := CopyDtoH(unsafe.Pointer(&got[0]), y, 16); err != nil {
		t.Fatal(err)
	}
	if got != [4]float32{1, 1, 1, 1} {
		t.Errorf("a refused launch ran: y = %v", got)
	}
	if Fault() != nil {
		t.Errorf("a refused launch is not a fault: %v", Fault())
	}
	var a Args
	a.Ptr(y).Ptr(y).Int64(4).Float(1)
	if err := Launch("lora_no_such_kernel", one, block, 0, &a); err == nil || !strings.Contains(err.Error(), "no such kernel") {
		t.Errorf("an unknown kernel: %v", err)
	}
}

// TestAllocBeyondMemory asks the emulator for more memory than the machine
// has: an error wrapping ErrOutOfMemory, not a fault, and the device works on.
func TestAllocBeyondMemory(t *testing.T) {
	for _, n := range []int64{1 << 50, 1<<62 + 1} {
		p, err := Alloc(n)
		if err == nil {
			Free(p)
			t.Fatalf("Alloc(%d) succeeded", n)
		}
		if !errors.Is(err, ErrOutOfMemory) || !strings.Contains(err.Error(), "memory") {
			t.Errorf("Alloc(%d): %v, want an error wrapping ErrOutOfMemory", n, err)
		}
	}
	if Fault() != nil {
		t.Fatalf("running out of memory is a fault: %v", Fault())
	}
	p, err := Alloc(64)
	if err != nil {
		t.Fatal(err)
	}
	if err := Free(p); err != nil {
		t.Fatal(err)
	}
}

// TestFaults checks, each in a child process (a fault is for the life of
// the process), that a stray device address is a fault reported by the call
// that used it, and that every later call returns an error wrapping that
// first fault: a double Free, a copy past the end of an allocation, a
// memset, a copy or a launch that names memory freed before it (Free is
// stream-ordered: what is queued after it must not touch the memory), a
// launch whose pointer argument lies outside device memory.
func TestFaults(t *testing.T) {
	cases := map[string]func(p Ptr) error{
		"double free":    func(p Ptr) error { Free(p); return Free(p) },
		"copy past end":  func(p Ptr) error { var b [8]float32; return CopyDtoH(unsafe.Pointer(&b[0]), p+4, 32) },
		"copy from host": func(p Ptr) error { var b [2]float32; return CopyHtoD(p+32, unsafe.Pointer(&b[0]), 8) },
		"memset freed":   func(p Ptr) error { Free(p); return Memset32(p, 0, 1) },
		"copy to freed":  func(p Ptr) error { var b [2]float32; Free(p); return CopyHtoD(p, unsafe.Pointer(&b[0]), 8) },
		"launch on freed": func(p Ptr) error {
			Free(p)
			var a Args
			a.Ptr(p).Ptr(p).Int64(4).Float(1)
			return Launch("lora_axpy", Dim3{X: 1, Y: 1, Z: 1}, Dim3{X: 32, Y: 1, Z: 1}, 0, &a)
		},
		"launch": func(p Ptr) error {
			var a Args
			a.Ptr(p).Ptr(p + 1<<40).Int64(4).Float(1)
			return Launch("lora_axpy", Dim3{X: 1, Y: 1, Z: 1}, Dim3{X: 32, Y: 1, Z: 1}, 0, &a)
		},
	}
	if name := os.Getenv("LORA_TEST_FAULT_CASE"); name != "" {
		p, err := Alloc(32)
		if err != nil {
			t.Fatal(err)
		}
		first := cases[name](p)
		if first == nil || Fault() == nil || !errors.Is(first, Fault()) {
			t.Fatalf("%s: returned %v, recorded fault %v", name, first, Fault())
		}
		fault := Fault()
		var b [1]float32
		var a Args
		a.Ptr(0).Ptr(0).Int64(0).Float(1)
		_, errAlloc := Alloc(4)
		_, errEvent := NewEvent()
		for call, err := range map[string]error{
			"Init":     Init(),
			"Alloc":    errAlloc,
			"Free":     Free(p + 8),
			"Memset32": Memset32(p, 0, 1),
			"CopyDtoH": CopyDtoH(unsafe.Pointer(&b[0]), p, 4),
			"CopyHtoD": CopyHtoD(p, unsafe.Pointer(&b[0]), 4),
			"Launch":   Launch("lora_axpy", Dim3{X: 1, Y: 1, Z: 1}, Dim3{X: 32, Y: 1, Z: 1}, 0, &a),
			"Sync":     Sync(),
			"NewEvent": errEvent,
		} {
			if !errors.Is(err, fault) || !strings.Contains(err.Error(), "restart the process") {
				t.Errorf("%s after %s: %v, want an error wrapping the first fault %v", call, name, err, fault)
			}
		}
		if Fault() != fault {
			t.Errorf("the fault changed from %v to %v", fault, Fault())
		}
		return
	}
	for name := range cases {
		t.Run(name, func(t *testing.T) { reftest.RunChild(t, "LORA_TEST_FAULT_CASE="+name) })
	}
}

// launchTest queues one of the emulator's own test kernels, which the
// table of kernels.Params does not list, past Launch's checks, in one
// block.
func launchTest(t *testing.T, kernel string, block int, a *Args) {
	t.Helper()
	launchTestGrid(t, kernel, 1, block, a)
}

// launchTestGrid is launchTest with grid blocks.
func launchTestGrid(t *testing.T, kernel string, grid, block int, a *Args) {
	t.Helper()
	mu.Lock()
	err := emuLaunch(kernel, Dim3{X: grid, Y: 1, Z: 1}, Dim3{X: block, Y: 1, Z: 1}, 0, a)
	mu.Unlock()
	if err != nil {
		t.Fatalf("launch %s: %v", kernel, err)
	}
}

// TestLaunchIsAsync checks that a launch returns while its kernel runs:
// emutest_wait waits for a flag that the host sets only after Launch
// returned, and a copy waits for the kernel before it reads.
func TestLaunchIsAsync(t *testing.T) {
	p, err := Alloc(8)
	if err != nil {
		t.Fatal(err)
	}
	defer Free(p)
	if err := Memset32(p, 0, 2); err != nil {
		t.Fatal(err)
	}
	var a Args
	a.Ptr(p).Ptr(p + 4)
	launchTest(t, "emutest_wait", 32, &a)
	atomic.StoreInt32((*int32)(ptr(p)), 1) // device memory is host memory here
	var seen int32
	if err := CopyDtoH(unsafe.Pointer(&seen), p+4, 4); err != nil {
		t.Fatal(err)
	}
	if seen != 1 {
		t.Fatal("the kernel never saw the flag set after Launch returned: Launch waited for the kernel")
	}
}

// TestKernelFaultAtSync checks, in a child process, the asynchronous
// contract: a launch whose kernel faults (a shuffle whose mask names a lane
// that returned) returns no error; the next call that waits for the stream
// reports the fault, with the seed that replays the order of blocks and
// threads; the fault is the device's, and every later call wraps it.
func TestKernelFaultAtSync(t *testing.T) {
	if os.Getenv("LORA_TEST_KERNEL_FAULT") == "" {
		reftest.RunChild(t, "LORA_TEST_KERNEL_FAULT=1")
		return
	}
	p, err := Alloc(128)
	if err != nil {
		t.Fatal(err)
	}
	var a Args
	a.Ptr(p)
	launchTest(t, "emutest_exited", 32, &a)
	err = Sync()
	for _, want := range []string{"cuda: Sync: kernel fault: emutest_exited", "names lane 0, which has returned from the kernel", "LORA_EMU_SEED="} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Sync after a faulting kernel: %v, want %q", err, want)
		}
	}
	if Fault() == nil || !errors.Is(err, Fault()) {
		t.Fatalf("the kernel's fault is not the device's: Sync %v, Fault %v", err, Fault())
	}
	var b [1]float32
	for call, err := range map[string]error{
		"CopyDtoH": CopyDtoH(unsafe.Pointer(&b[0]), p, 4),
		"Launch":   Launch("lora_axpy", Dim3{X: 1, Y: 1, Z: 1}, Dim3{X: 32, Y: 1, Z: 1}, 0, new(Args).Ptr(p).Ptr(p).Int64(1).Float(1)),
		"Sync":     Sync(),
	} {
		if !errors.Is(err, Fault()) || !strings.Contains(err.Error(), "restart the process") {
			t.Errorf("%s after the kernel fault: %v, want an error wrapping it", call, err)
		}
	}
}

// TestSharedRefilled launches emutest_shared, whose every thread reads its
// word of a static shared array before its block writes it, three times
// over several blocks: every word read must be the emulator's fill pattern.
// The first launch fills the whole section before each block and learns
// the range the kernel writes; the later ones fill only that range, so a
// range learned a word short at either end leaves there a stale word of the
// block before, which a later launch reads.
func TestSharedRefilled(t *testing.T) {
	const threads, blocks = 64, 5 // threads: emutest_shared's array
	p, err := Alloc(4 * threads * blocks)
	if err != nil {
		t.Fatal(err)
	}
	defer Free(p)
	got := make([]uint32, threads*blocks)
	for launch := range 3 {
		if err := Memset32(p, 0, threads*blocks); err != nil {
			t.Fatal(err)
		}
		var a Args
		a.Ptr(p)
		launchTestGrid(t, "emutest_shared", blocks, threads, &a)
		if err := CopyDtoH(unsafe.Pointer(&got[0]), p, 4*threads*blocks); err != nil {
			t.Fatal(err)
		}
		for i, v := range got {
			if v != 0xffa5a5a5 {
				t.Errorf("launch %d: block %d's thread %d read %#x from shared memory before its block wrote it, want the fill pattern 0xffa5a5a5",
					launch+1, i/threads, i%threads, v)
			}
		}
	}
}

// TestMaskWithoutCaller checks, in a child process (a fault is sticky),
// that a shuffle whose mask does not name the calling lane is a fault that
// says so: emutest_unnamed has every lane shuffle with a mask that leaves
// out lane 0. The child runs for at most a minute, so that an emulator
// that lets lane 0 wait for ever fails the test rather than hangs it.
func TestMaskWithoutCaller(t *testing.T) {
	if os.Getenv("LORA_TEST_MASK_CALLER") == "" {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		cmd := reftest.Child(t, "LORA_TEST_MASK_CALLER=1")
		cmd = exec.CommandContext(ctx, cmd.Path, cmd.Args[1:]...)
		cmd.Env = append(os.Environ(), "LORA_TEST_MASK_CALLER=1")
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), "--- PASS: TestMaskWithoutCaller (") {
			t.Errorf("in a child process: %v (%v)\n%s", err, ctx.Err(), out)
		}
		return
	}
	p, err := Alloc(4 * 32)
	if err != nil {
		t.Fatal(err)
	}
	var a Args
	a.Ptr(p)
	launchTest(t, "emutest_unnamed", 32, &a)
	err = Sync()
	for _, want := range []string{"kernel fault: emutest_unnamed", "with mask 0xfffffffe, which does not name the calling lane"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Sync after a shuffle whose mask leaves out its caller: %v, want %q", err, want)
		}
	}
}
