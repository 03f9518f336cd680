package lora_test

import (
	"fmt"
	"testing"

	"github.com/golora/lora"
	"github.com/golora/lora/internal/perf"
)

// benchShapes: a decode-sized batch and a prefill-sized one at 1024 and
// 4096, rank 16. `go run ./bench` measures many more.
var benchShapes = []perf.Shape{
	{N: 1, In: 1024, Out: 1024, R: 16},
	{N: 64, In: 1024, Out: 1024, R: 16},
	{N: 1, In: 4096, Out: 4096, R: 16},
	{N: 64, In: 4096, Out: 4096, R: 16},
}

func benchForward(b *testing.B, withAdapter bool, run func(*perf.Problem) error, merged bool) {
	for _, s := range benchShapes {
		b.Run(s.String(), func(b *testing.B) {
			p, err := perf.NewProblem(s, perf.Copies(s))
			if err != nil {
				b.Fatal(err)
			}
			defer p.Free()
			if err := p.SetMerged(merged); err != nil {
				b.Fatal(err)
			}
			for b.Loop() {
				if err := run(p); err != nil {
					b.Fatal(err)
				}
			}
			if err := lora.Sync(); err != nil {
				b.Fatal(err)
			}
			sec := b.Elapsed().Seconds() / float64(b.N)
			flop := s.BaseFLOP()
			if withAdapter {
				flop += s.LoRAFLOP()
			}
			b.ReportMetric(flop/sec/1e9, "GFLOP/s")
			b.ReportMetric(s.Bytes(withAdapter)/sec/1e9, "GB/s")
		})
	}
}

// BenchmarkLinear is the base product x·Wᵀ alone: the floor for Forward.
func BenchmarkLinear(b *testing.B) {
	benchForward(b, false, (*perf.Problem).Base, false)
}

// BenchmarkForward is the fused unmerged Forward.
func BenchmarkForward(b *testing.B) {
	benchForward(b, true, (*perf.Problem).Forward, false)
}

// BenchmarkForwardUnfused is the three-step path: x·Wᵀ, (x·Aᵀ)·Bᵀ, then an add.
func BenchmarkForwardUnfused(b *testing.B) {
	benchForward(b, true, (*perf.Problem).Unfused, false)
}

// BenchmarkForwardMerged is Forward after Merge: x·Wᵀ on the merged W.
func BenchmarkForwardMerged(b *testing.B) {
	benchForward(b, false, (*perf.Problem).Forward, true)
}

// BenchmarkMerge times one Merge or Unmerge (they alternate), a rank-r
// in-place update of W.
func BenchmarkMerge(b *testing.B) {
	for _, in := range []int{1024, 4096} {
		for _, r := range []int{16, 64} {
			s := perf.Shape{N: 1, In: in, Out: in, R: r}
			b.Run(fmt.Sprintf("in=%d out=%d r=%d", in, in, r), func(b *testing.B) {
				p, err := perf.NewProblem(s, perf.Copies(s))
				if err != nil {
					b.Fatal(err)
				}
				defer p.Free()
				for b.Loop() {
					if err := p.MergeToggle(); err != nil {
						b.Fatal(err)
					}
				}
				if err := lora.Sync(); err != nil {
					b.Fatal(err)
				}
				sec := b.Elapsed().Seconds() / float64(b.N)
				b.ReportMetric(s.MergeBytes()/sec/1e9, "GB/s")
				b.ReportMetric(2*float64(r*in*in)/sec/1e9, "GFLOP/s")
			})
		}
	}
}
