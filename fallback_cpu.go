//go:build !cuda && !cudaemu

package lora

import (
	"runtime"
	"sync"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas32"
)

// The CPU backend: matrices in host memory, products through gonum's BLAS
// (blas32.Implementation, pure Go unless another implementation is installed
// with blas32.Use), the rank-r update of Merge by a row-parallel loop of its
// own. Every call completes before it returns.

const backendName = "cpu"

func backendSync() error { return nil }

// buffer is a Matrix's storage: host memory.
type buffer struct{ data []float32 }

func newBuffer(n int) (buffer, error) { return buffer{data: make([]float32, n)}, nil }

func (b *buffer) read(dst []float32) error  { copy(dst, b.data); return nil }
func (b *buffer) write(src []float32) error { copy(b.data, src); return nil }
func (b *buffer) free()                     { b.data = nil }

// linear computes y = x·Wᵀ.
func linear(y, x, w *Matrix) error {
	n, in, out := x.rows, x.cols, w.rows
	impl := blas32.Implementation()
	if n == 1 {
		impl.Sgemv(blas.NoTrans, out, in, 1, w.buf.data, in, x.buf.data, 1, 0, y.buf.data, 1)
		return nil
	}
	impl.Sgemm(blas.NoTrans, blas.Trans, n, out, in, 1, x.buf.data, in, w.buf.data, in, 0, y.buf.data, out)
	return nil
}

// tPool recycles the n×r scratch T of forward.
var tPool sync.Pool

// forward computes y = x·Wᵀ + (s·x·Aᵀ)·Bᵀ: T = s·x·Aᵀ (n×r) first, then the
// base product into y, then T·Bᵀ accumulated into y in place (beta = 1). No
// temporary of y's size and no separate pass over y.
func forward(y, x, w, a, b *Matrix, s float32) error {
	n, in, out, r := x.rows, x.cols, w.rows, a.rows
	tp, _ := tPool.Get().(*[]float32)
	if tp == nil || cap(*tp) < n*r {
		t := make([]float32, n*r)
		tp = &t
	}
	t := (*tp)[:n*r]
	impl := blas32.Implementation()
	impl.Sgemm(blas.NoTrans, blas.Trans, n, r, in, s, x.buf.data, in, a.buf.data, in, 0, t, r)
	if err := linear(y, x, w); err != nil {
		return err
	}
	impl.Sgemm(blas.NoTrans, blas.Trans, n, out, r, 1, t, r, b.buf.data, r, 1, y.buf.data, out)
	tPool.Put(tp)
	return nil
}

// axpy computes y += alpha·x.
func axpy(y *Matrix, alpha float32, x *Matrix) error {
	blas32.Implementation().Saxpy(len(x.buf.data), alpha, x.buf.data, 1, y.buf.data, 1)
	return nil
}

// allFinite reports whether every element of the matrices is finite.
func allFinite(ms ...*Matrix) (bool, error) {
	for _, m := range ms {
		for _, v := range m.buf.data {
			if v-v != 0 { // NaN − NaN and Inf − Inf are NaN
				return false, nil
			}
		}
	}
	return true, nil
}

// rankUpdate computes W += c·B·A in place, each row of W read and written
// once: row i gets Σₖ (c·B[i,k])·A[k,:], accumulated from zero in k order and
// then added, so that c and −c add and remove bit for bit the same delta.
// Rows are split among goroutines; A stays in cache.
func rankUpdate(w, a, b *Matrix, c float32) error {
	out, in, r := w.rows, w.cols, a.rows
	wd, ad, bd := w.buf.data, a.buf.data, b.buf.data
	rows := func(lo, hi int) {
		coef := make([]float32, r)
		for i := lo; i < hi; i++ {
			for k, v := range bd[i*r : (i+1)*r] {
				coef[k] = c * v
			}
			rankRow(wd[i*in:(i+1)*in], ad, coef, in)
		}
	}
	workers := min(runtime.GOMAXPROCS(0), out)
	// Below about 32 K multiply-adds a goroutine costs more than it saves.
	if workers < 2 || out*in*r < 1<<15 {
		rows(0, out)
		return nil
	}
	var wg sync.WaitGroup
	for p := range workers {
		lo, hi := p*out/workers, (p+1)*out/workers
		wg.Add(1)
		go func() { defer wg.Done(); rows(lo, hi) }()
	}
	wg.Wait()
	return nil
}

// rankRowGo computes dst[j] += Σₖ coef[k]·a[k·lda+j] for j < len(dst), the
// sum accumulated from zero in k order. It is the portable form of rankRow.
func rankRowGo(dst, a, coef []float32, lda int) {
	const chunk = 256
	var delta [chunk]float32
	for j0 := 0; j0 < len(dst); j0 += chunk {
		d := delta[:min(chunk, len(dst)-j0)]
		clear(d)
		for k, ck := range coef {
			row := a[k*lda+j0 : k*lda+j0+len(d)]
			for j, v := range row {
				d[j] += ck * v
			}
		}
		out := dst[j0 : j0+len(d)]
		for j, v := range d {
			out[j] += v
		}
	}
}
