package cuda

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/golora/lora/kernels"
)

// asyncDevice models the device side of a staged copy on an asynchronous
// GPU: device only queues a transfer, which happens when a wait reaches it
// (in stream order), so a piece copied into or out of a half whose transfer
// is still queued reads or writes the wrong bytes, and the test sees it.
type asyncDevice struct {
	t        *testing.T
	half     int64
	toDev    bool
	mem      []byte    // the caller's memory
	dev      []byte    // device memory
	stage    [2][]byte // the two halves
	queue    []transfer
	pieces   []transfer // every device call, in order
	hostErrs int        // host calls on a half with a queued transfer
	calls    int
	failAt   int // the call (1-based, over all three methods) that fails; 0: none
}

type transfer struct {
	h      int
	off, n int64
}

var errInjected = errors.New("injected failure")

func (d *asyncDevice) count() error {
	d.calls++
	if d.calls == d.failAt {
		return errInjected
	}
	return nil
}

// run performs the queued transfers up to and including the last one
// through half h (all of them for h < 0).
func (d *asyncDevice) run(h int) {
	last := -1
	for i, tr := range d.queue {
		if h < 0 || tr.h == h {
			last = i
		}
	}
	for _, tr := range d.queue[:last+1] {
		if d.toDev {
			copy(d.dev[tr.off:tr.off+tr.n], d.stage[tr.h][:tr.n])
		} else {
			copy(d.stage[tr.h][:tr.n], d.dev[tr.off:tr.off+tr.n])
		}
	}
	d.queue = d.queue[last+1:]
}

func (d *asyncDevice) wait(h int) error {
	if err := d.count(); err != nil {
		return err
	}
	d.run(h)
	return nil
}

func (d *asyncDevice) host(h int, off, n int64) error {
	if err := d.count(); err != nil {
		return err
	}
	for _, tr := range d.queue {
		if tr.h == h {
			d.hostErrs++
		}
	}
	if d.toDev {
		copy(d.stage[h][:n], d.mem[off:off+n])
	} else {
		copy(d.mem[off:off+n], d.stage[h][:n])
	}
	return nil
}

func (d *asyncDevice) device(h int, off, n int64) error {
	if err := d.count(); err != nil {
		return err
	}
	if n < 1 || n > d.half || off < 0 || off+n > int64(len(d.dev)) {
		d.t.Errorf("device(%d, %d, %d): piece outside the transfer of %d bytes or the half of %d", h, off, n, len(d.dev), d.half)
		return errors.New("bad piece")
	}
	d.queue = append(d.queue, transfer{h, off, n})
	d.pieces = append(d.pieces, transfer{h, off, n})
	return nil
}

func newAsyncDevice(t *testing.T, toDev bool, total, half int64) *asyncDevice {
	d := &asyncDevice{t: t, half: half, toDev: toDev, mem: make([]byte, total), dev: make([]byte, total)}
	d.stage[0], d.stage[1] = make([]byte, half), make([]byte, half)
	for i := range total {
		d.mem[i] = byte(i*7 + 1)
		d.dev[i] = byte(i*13 + 5)
	}
	return d
}

func TestStagedCopy(t *testing.T) {
	for _, tc := range []struct{ total, half int64 }{
		{0, 8}, {1, 8}, {7, 8}, {8, 8}, {9, 8}, {16, 8}, {17, 8}, {43, 8},
		{5, 1}, {1000, 64}, {1 << 16, 4096}, {1<<16 + 3, 4096},
	} {
		for _, toDev := range []bool{true, false} {
			t.Run(fmt.Sprintf("total=%d/half=%d/toDevice=%v", tc.total, tc.half, toDev), func(t *testing.T) {
				d := newAsyncDevice(t, toDev, tc.total, tc.half)
				want := bytes.Clone(d.mem)
				if !toDev {
					want = bytes.Clone(d.dev)
				}
				if err := stagedCopy(toDev, tc.total, tc.half, d); err != nil {
					t.Fatal(err)
				}
				if d.hostErrs > 0 {
					t.Errorf("%d pieces went through a half whose transfer was still queued", d.hostErrs)
				}
				if toDev {
					// The caller may reuse its memory at once; the device then
					// finishes its queue.
					for i := range d.mem {
						d.mem[i] = 0xEE
					}
					d.run(-1)
					if !bytes.Equal(d.dev, want) {
						t.Errorf("device memory differs from the source")
					}
				} else if !bytes.Equal(d.mem, want) {
					// Every byte must be in host memory when stagedCopy returns.
					t.Errorf("host memory differs from the device's when the copy returns")
				}
				// The pieces tile the transfer in order, through alternate halves.
				wantPieces := (tc.total + tc.half - 1) / tc.half
				if int64(len(d.pieces)) != wantPieces {
					t.Fatalf("%d pieces, want %d", len(d.pieces), wantPieces)
				}
				for i, p := range d.pieces {
					if p.off != int64(i)*tc.half || p.h != i%2 || p.n != min(tc.half, tc.total-p.off) {
						t.Errorf("piece %d is %+v, want offset %d through half %d", i, p, int64(i)*tc.half, i%2)
					}
				}
			})
		}
	}
}

func TestStagedCopyErrors(t *testing.T) {
	for _, tc := range []struct {
		total, half int64
		want        string
	}{
		{-1, 8, "staged copy of -1 bytes"},
		{8, 0, "halves of 0 bytes"},
		{8, -8, "halves of -8 bytes"},
	} {
		d := newAsyncDevice(t, true, 0, 1)
		err := stagedCopy(true, tc.total, tc.half, d)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("stagedCopy(%d, %d) = %v, want an error containing %q", tc.total, tc.half, err, tc.want)
		}
		if d.calls != 0 {
			t.Errorf("stagedCopy(%d, %d) called the device %d times", tc.total, tc.half, d.calls)
		}
	}
	// A failure at any call stops the copy there and is returned as it is.
	for _, toDev := range []bool{true, false} {
		all := newAsyncDevice(t, toDev, 40, 8)
		if err := stagedCopy(toDev, 40, 8, all); err != nil {
			t.Fatal(err)
		}
		for at := 1; at <= all.calls; at++ {
			d := newAsyncDevice(t, toDev, 40, 8)
			d.failAt = at
			if err := stagedCopy(toDev, 40, 8, d); !errors.Is(err, errInjected) {
				t.Errorf("toDevice=%v, call %d fails: stagedCopy returned %v", toDev, at, err)
			}
			if d.calls != at {
				t.Errorf("toDevice=%v, call %d fails: %d calls made, want none after it", toDev, at, d.calls)
			}
		}
	}
}

// TestArgsAllocatesNothing checks that packing a launch's arguments and
// checking them allocates nothing: the part of every launch shared by the
// cuda and cudaemu builds.
func TestArgsAllocatesNothing(t *testing.T) {
	const kernel = "lora_forward_small"
	n := kernels.Params[kernel]
	if n < 4 {
		t.Fatalf("%s takes %d parameters, the test packs at least 4", kernel, n)
	}
	allocs := testing.AllocsPerRun(100, func() {
		var a Args
		a.Ptr(0x1000).Ptr(0).Int64(1 << 40).Float(0.5)
		for i := 4; i < n; i++ {
			a.Int(i)
		}
		if err := checkLaunch(kernel, Dim3{4, 2, 1}, Dim3{128, 1, 1}, 0, &a); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("packing and checking a launch made %v allocations, want 0", allocs)
	}
}
