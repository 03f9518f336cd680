package lora

// Freeing right after the last use is queued, on every backend. On the GPU
// backends every call below returns once its work is queued and Free is
// stream-ordered: the kernels queued before a Free, a Bank.Remove or a
// Bank.Free still read what those release. Each test first queues a large
// Linear, so that on the emulator the work under test is still queued when
// the memory is freed: a free that did not keep the stream's order faults
// there (a launch queued before it names the memory) or leaves NaN where
// the queued kernels read the freed memory through the Bank's table.

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/golora/lora/internal/reftest"
)

// streamHold is a Linear large enough to keep the emulator's stream busy
// for a while; queue queues it once more.
type streamHold struct{ y, x, w *Matrix }

func newStreamHold(t *testing.T, rng *rand.Rand) streamHold {
	t.Helper()
	const n, in, out = 128, 512, 512
	x, _ := dtOperand(t, F32, n, in, reftest.Normal(rng, n*in, 1))
	w, _ := dtOperand(t, F32, out, in, reftest.Normal(rng, out*in, 1))
	return streamHold{dtNew(t, F32, n, out), x, w}
}

func (h streamHold) queue(t *testing.T) {
	t.Helper()
	if err := Linear(h.y, h.x, h.w); err != nil {
		t.Fatalf("Linear: %v", err)
	}
}

// TestFreeAfterQueuedForward frees x, W, and the layer's A and B right
// after queuing Layer.Forward and Linear over them, then reads y: both
// results must be those of the freed operands.
func TestFreeAfterQueuedForward(t *testing.T) {
	const n, in, out, r = 24, 96, 80, 4
	const s = 0.75
	rng := rand.New(rand.NewPCG(201, 202))
	h := newStreamHold(t, rng)
	x, xv := dtOperand(t, F32, n, in, reftest.Normal(rng, n*in, 1))
	w, wv := dtOperand(t, F32, out, in, reftest.Normal(rng, out*in, 1/math.Sqrt(in)))
	a, av := dtOperand(t, F32, r, in, reftest.Normal(rng, r*in, 1/math.Sqrt(in)))
	b, bv := dtOperand(t, F32, out, r, reftest.Normal(rng, out*r, 0.5))
	y, y0 := dtOutput(t, F32, n, out), dtOutput(t, F32, n, out)
	l, err := NewLayerFrom(w, a, b, s)
	if err != nil {
		t.Fatal(err)
	}
	run := func() {
		if err := l.Forward(y, x); err != nil {
			t.Fatalf("Forward: %v", err)
		}
		if err := Linear(y0, x, w); err != nil {
			t.Fatalf("Linear: %v", err)
		}
	}
	// Once through, so that the scratch memory has grown (growing it
	// waits for the stream) before the run under test.
	h.queue(t)
	run()
	if err := Sync(); err != nil {
		t.Fatal(err)
	}
	h.queue(t)
	run()
	l.Free()
	x.Free()
	w.Free()
	if err := Sync(); err != nil {
		t.Fatalf("Sync after freeing the operands of queued work: %v", err)
	}
	want, mag := reftest.Forward(reftest.Shape{N: n, In: in, Out: out, R: r}, s, xv, wv, av, bv)
	reftest.Close(t, "Forward: y", dtRead(t, y), want, mag, reftest.Gamma(in+r+3))
	want0, mag0 := reftest.Forward(reftest.Shape{N: n, In: in, Out: out}, 0, xv, wv, nil, nil)
	reftest.Close(t, "Linear: y", dtRead(t, y0), want0, mag0, reftest.Gamma(in+2))
}

// TestBankRemoveAfterQueuedForward removes every adapter right after
// queuing a prefill (n = 40) and a decode (n = 5) Forward that use them,
// over an F32 and a BF16 W, then frees a Bank right after queuing a Forward
// through it: each y must be the one of the adapters as they were, and a
// Forward naming a removed adapter is refused.
func TestBankRemoveAfterQueuedForward(t *testing.T) {
	const in, out, maxRank = 72, 56, 6
	for _, wdt := range []DType{F32, BF16} {
		t.Run(wdt.String(), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(203, uint64(wdt)))
			h := newStreamHold(t, rng)
			w, wv := bankW(t, rng, wdt, out, in)
			bk, err := NewBank(w, BankConfig{MaxRank: maxRank, Capacity: 4})
			if err != nil {
				t.Fatal(err)
			}
			defer bk.Free()
			ads := map[int32]*bankTestAdapter{}
			var held []int32
			for _, r := range []int{2, 5, maxRank} {
				id, ad := bankAddOf(t, rng, bk, F32, r)
				ads[id] = ad
				held = append(held, id)
			}
			type batch struct {
				x, y *Matrix
				xv   []float64
				ids  []int32
			}
			var batches []batch
			for _, n := range []int{40, 5} {
				x, xv := dtOperand(t, F32, n, in, reftest.Normal(rng, n*in, 1))
				batches = append(batches, batch{x, dtOutput(t, F32, n, out), xv, bankMixedIDs(n, held)})
			}
			forward := func(bk *Bank) {
				for _, b := range batches {
					if err := bk.Forward(b.y, b.x, b.ids); err != nil {
						t.Fatalf("Forward: %v", err)
					}
				}
			}
			check := func(what string) {
				for _, b := range batches {
					n := len(b.ids)
					want, mag := bankWant(b.xv, wv, n, in, out, b.ids, ads)
					reftest.Close(t, what+": y", dtRead(t, b.y), want, mag, reftest.Gamma(in+maxRank+3))
				}
			}
			h.queue(t)
			forward(bk) // scratch and the Bank's buffers grow here
			if err := Sync(); err != nil {
				t.Fatal(err)
			}
			h.queue(t)
			forward(bk)
			for _, id := range held {
				if err := bk.Remove(int(id)); err != nil {
					t.Fatalf("Remove(%d): %v", id, err)
				}
			}
			if err := Sync(); err != nil {
				t.Fatalf("Sync after Remove: %v", err)
			}
			check("Remove after Forward")
			if err := bk.Forward(batches[1].y, batches[1].x, batches[1].ids); err == nil {
				t.Error("Forward naming removed adapters succeeded")
			}

			// A second Bank, freed right after a Forward through it.
			bk2, err := NewBank(w, BankConfig{MaxRank: maxRank, Capacity: 4})
			if err != nil {
				t.Fatal(err)
			}
			ads = map[int32]*bankTestAdapter{}
			for i, r := range []int{2, 5, maxRank} {
				id, ad := bankAddOf(t, rng, bk2, F32, r)
				if id != held[i] {
					t.Fatalf("Add gave id %d, want %d", id, held[i])
				}
				ads[id] = ad
			}
			h.queue(t)
			forward(bk2)
			bk2.Free()
			if err := Sync(); err != nil {
				t.Fatalf("Sync after Bank.Free: %v", err)
			}
			check("Bank.Free after Forward")
		})
	}
}
