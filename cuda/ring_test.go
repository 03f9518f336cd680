package cuda

import (
	"errors"
	"math/rand/v2"
	"testing"
)

// TestRing takes regions of random sizes from a small ring, as CopyHtoD's
// uploads do, and checks against a byte map of the ring that no region
// handed out overlaps one still in use, that take retires (waits for) only
// the oldest regions, in order, and none while the region fits at the head
// without touching one in use, and that an error of done stops take with
// the region still in use.
func TestRing(t *testing.T) {
	const size = 1000
	rng := rand.New(rand.NewPCG(1, 2))
	r := ring{size: size}
	var owner [size]int // tag+1 of the region in use over each byte, 0 if none
	next := 0
	var order []int // tags pushed, oldest first, not yet retired
	for range 5000 {
		n := int64(1 + rng.IntN(size/3))
		if rng.IntN(10) == 0 {
			n = size // the whole ring
		}
		head := r.head
		fits := head+n <= size
		clearAhead := fits
		for i := head; fits && i < head+n; i++ {
			clearAhead = clearAhead && owner[i] == 0
		}
		waits := 0
		start, err := r.take(n, func(tag int) error {
			if len(order) == 0 || order[0] != tag {
				t.Fatalf("take retired tag %d, want the oldest in use, %v", tag, order[:min(len(order), 1)])
			}
			order = order[1:]
			for i := range owner {
				if owner[i] == tag+1 {
					owner[i] = 0
				}
			}
			waits++
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if clearAhead && (waits > 0 || start != head) {
			t.Fatalf("%d bytes fit at head %d over free bytes, but take waited %d times and gave %d", n, head, waits, start)
		}
		if start < 0 || start+n > size {
			t.Fatalf("take(%d) = %d, outside a ring of %d bytes", n, start, size)
		}
		for i := start; i < start+n; i++ {
			if owner[i] != 0 {
				t.Fatalf("take(%d) = %d overlaps tag %d, still in use, at byte %d", n, start, owner[i]-1, i)
			}
			owner[i] = next + 1
		}
		r.push(start, n, next)
		order = append(order, next)
		next++
	}
	// An error of done is returned, and the region stays in use.
	r = ring{size: size}
	r.push(0, 600, 7)
	boom := errors.New("boom")
	if _, err := r.take(600, func(int) error { return boom }); !errors.Is(err, boom) {
		t.Fatalf("take with a failing done: %v, want boom", err)
	}
	if len(r.live) != 1 || r.live[0].tag != 7 {
		t.Fatalf("after a failed take the regions in use are %v, want tag 7's", r.live)
	}
}
