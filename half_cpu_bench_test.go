//go:build !cuda && !cudaemu

package lora_test

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/golora/lora"
)

// halfBenchLayer returns a layer over a random in×in W of dtype dt, rank r,
// with a random B (so that Merge has work to do), and x (n×in), y (n×in).
func halfBenchLayer(b *testing.B, dt lora.DType, n, in, r int) (l *lora.Layer, x, y *lora.Matrix) {
	b.Helper()
	rng := rand.New(rand.NewPCG(5, uint64(in)))
	rnd := func(k int, scale float64) []float32 {
		s := make([]float32, k)
		for i := range s {
			s[i] = float32(rng.NormFloat64() * scale)
		}
		return s
	}
	w, err := lora.NewMatrixOf(dt, in, in)
	if err != nil {
		b.Fatal(err)
	}
	if err := w.Write(rnd(in*in, 0.02)); err != nil {
		b.Fatal(err)
	}
	l, err = lora.NewLayer(w, lora.Config{Rank: r, Seed: 1})
	if err != nil {
		b.Fatal(err)
	}
	if err := l.B().Write(rnd(in*r, 0.01)); err != nil {
		b.Fatal(err)
	}
	if x, err = lora.NewMatrixFrom(n, in, rnd(n*in, 1)); err != nil {
		b.Fatal(err)
	}
	if y, err = lora.NewMatrix(n, in); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { l.Free(); w.Free(); x.Free(); y.Free() })
	return l, x, y
}

// BenchmarkHalfForward times the unmerged Forward of a 4096×4096 layer,
// rank 16, with an F32, BF16 or F16 W (x and y F32), at n = 1, 16 and 64:
// the BF16/F32 ratio of each n is the figure to watch.
func BenchmarkHalfForward(b *testing.B) {
	const in, r = 4096, 16
	for _, n := range []int{1, 16, 64} {
		for _, dt := range []lora.DType{lora.F32, lora.BF16, lora.F16} {
			b.Run(fmt.Sprintf("n=%d/%v", n, dt), func(b *testing.B) {
				l, x, y := halfBenchLayer(b, dt, n, in, r)
				for b.Loop() {
					if err := l.Forward(y, x); err != nil {
						b.Fatal(err)
					}
				}
				sec := b.Elapsed().Seconds() / float64(b.N)
				b.ReportMetric(2*float64(n)*float64(in)*float64(in+2*r)/sec/1e9, "GFLOP/s")
			})
		}
	}
}

// BenchmarkHalfBackward times Backward (dx included) of the same layers.
func BenchmarkHalfBackward(b *testing.B) {
	const in, r = 4096, 16
	for _, n := range []int{1, 16} {
		for _, dt := range []lora.DType{lora.F32, lora.BF16} {
			b.Run(fmt.Sprintf("n=%d/%v", n, dt), func(b *testing.B) {
				l, x, dy := halfBenchLayer(b, dt, n, in, r)
				dx, _ := lora.NewMatrix(n, in)
				dA, _ := lora.NewMatrix(r, in)
				dB, _ := lora.NewMatrix(in, r)
				for b.Loop() {
					if err := l.Backward(dx, dA, dB, dy, x); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkHalfMerge times one Merge or Unmerge (they alternate) of a
// 4096×4096 W, rank 16, F32, BF16 or F16.
func BenchmarkHalfMerge(b *testing.B) {
	const in, r = 4096, 16
	for _, dt := range []lora.DType{lora.F32, lora.BF16, lora.F16} {
		b.Run(dt.String(), func(b *testing.B) {
			l, _, _ := halfBenchLayer(b, dt, 1, in, r)
			for b.Loop() {
				op := l.Merge
				if l.Merged() {
					op = l.Unmerge
				}
				if err := op(); err != nil {
					b.Fatal(err)
				}
			}
			sec := b.Elapsed().Seconds() / float64(b.N)
			b.ReportMetric(2*float64(r*in*in)/sec/1e9, "GFLOP/s")
		})
	}
}
