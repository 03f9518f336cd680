package cpu

import "testing"

// TestSlabPool checks the size classes: a slice of the asked length and a
// power-of-two capacity at least that, a slice given back found again by
// a request of its class and never by a larger one, and a slice whose
// capacity is not a power of two given to the class it fully holds.
func TestSlabPool(t *testing.T) {
	var p slabPool[float32]
	for _, n := range []int{0, 1, 2, 3, 64, 65, 1000, 1 << 20} {
		s := p.get(n)
		if len(*s) != n || cap(*s) < max(n, 1) || cap(*s)&(cap(*s)-1) != 0 || cap(*s) >= 2*max(n, 1) {
			t.Fatalf("get(%d): len %d cap %d", n, len(*s), cap(*s))
		}
		p.Put(s)
	}
	// A marked slice of class 7 (128) comes back for 100 and 128, never for
	// 129. sync.Pool may drop what it holds at any time, so only what is
	// found is checked.
	s := p.get(100)
	(*s)[0] = 42
	p.Put(s)
	if g := p.get(129); cap(*g) < 129 || cap(*g) >= 258 {
		t.Fatalf("get(129) gave cap %d", cap(*g))
	}
	for _, n := range []int{100, 128, 65} {
		g := p.get(n)
		if len(*g) != n || cap(*g) != 128 {
			t.Fatalf("get(%d) gave len %d cap %d", n, len(*g), cap(*g))
		}
		p.Put(g)
	}
	odd := make([]float32, 10, 300) // capacity 300 holds class 8 (256)
	p.Put(&odd)
	for range 3 {
		g := p.get(256)
		if cap(*g) < 256 {
			t.Fatalf("get(256) gave cap %d", cap(*g))
		}
	}
	p.Put(nil)
	empty := []float32{}
	p.Put(&empty)
}
