package cpu

import (
	"math/bits"
	"sync"
)

// slabPool recycles slices by size class: class c holds slices of capacity
// 2^c, so that a call asking for n elements gets one of the smallest class
// that holds n, and a small slice is never handed to a large request (to
// be dropped and replaced by a newly allocated, newly faulted one) nor a
// large one kept by a small use. Products of different shapes that
// alternate, as a model's layers do, each find their own.
type slabPool[T any] struct{ classes [bits.UintSize]sync.Pool }

// get returns a slice of length n (contents undefined) whose capacity is
// n rounded up to a power of two.
func (p *slabPool[T]) get(n int) *[]T {
	c := bits.Len(uint(max(n, 1) - 1))
	if s, _ := p.classes[c].Get().(*[]T); s != nil {
		*s = (*s)[:n]
		return s
	}
	s := make([]T, n, 1<<c)
	return &s
}

// Put gives s back to its class: the largest power of two its capacity
// holds.
func (p *slabPool[T]) Put(s *[]T) {
	if s == nil || cap(*s) == 0 {
		return
	}
	p.classes[bits.Len(uint(cap(*s)))-1].Put(s)
}

// f32Slabs holds the float32 scratch of the products and the API's staging
// of half-precision operands (TakeF32).
var f32Slabs slabPool[float32]

// TakeF32 returns float32 scratch of n elements (contents undefined),
// recycled by size class; GiveF32 takes it back.
func TakeF32(n int) *[]float32 { return f32Slabs.get(n) }

// GiveF32 returns scratch from TakeF32 for reuse.
func GiveF32(s *[]float32) { f32Slabs.Put(s) }
