package cpu

import (
	"runtime"
	"sync"
)

// Parallel calls f on consecutive parts of [0, n), one per goroutine, up to
// GOMAXPROCS of them, or once on [0, n) when work (multiply-adds) is too
// small to pay for a goroutine.
func Parallel(n int, work int, f func(lo, hi int)) {
	p := min(runtime.GOMAXPROCS(0), n)
	if p < 2 || work < 1<<16 {
		f(0, n)
		return
	}
	var wg sync.WaitGroup
	for g := range p {
		lo, hi := g*n/p, (g+1)*n/p
		wg.Add(1)
		go func() { defer wg.Done(); f(lo, hi) }()
	}
	wg.Wait()
}

// blasThreaded is true when the installed BLAS runs each call on threads of
// its own (OpenBLAS, with -tags openblas): its calls are then made whole, not
// split among goroutines, and its products are preferred to the AVX2 loops.
var blasThreaded bool

// ThreadedBLAS reports whether the BLAS in use runs each call on threads of
// its own (OpenBLAS, with -tags openblas).
func ThreadedBLAS() bool { return blasThreaded }

// parallelBLAS is Parallel for work done by BLAS calls.
func parallelBLAS(n int, work int, f func(lo, hi int)) {
	if blasThreaded {
		f(0, n)
		return
	}
	Parallel(n, work, f)
}

// grow returns s with length n, reallocated when its capacity is short.
func grow(s []float32, n int) []float32 {
	if cap(s) < n {
		return make([]float32, n)
	}
	return s[:n]
}
