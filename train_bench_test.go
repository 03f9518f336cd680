package lora_test

import (
	"testing"

	"github.com/golora/lora"
	"github.com/golora/lora/internal/perf"
)

// trainShapes: a small batch and a training-sized one at 1024, and the
// shape of the targets, in = out = 4096, r = 16, n = 256. Compare
// BenchmarkBackward and BenchmarkAdamWStep with BenchmarkTrainForward at the
// same shape: targets are Backward with dx ≤ 1.15 × Forward, without dx
// ≤ 0.1 × Forward, and a Step ≤ 0.02 × Forward.
var trainShapes = []perf.Shape{
	{N: 16, In: 1024, Out: 1024, R: 16},
	{N: 256, In: 1024, Out: 1024, R: 16},
	{N: 256, In: 4096, Out: 4096, R: 16},
}

// benchTrain times op on a perf.Train of each shape and reports GFLOP/s of
// flop(s) and GB/s of bytes(s) per call (each metric when its count is
// nonzero).
func benchTrain(b *testing.B, op func(*perf.Train) error, flop, bytes func(perf.Shape) float64) {
	for _, s := range trainShapes {
		b.Run(s.String(), func(b *testing.B) {
			t, err := perf.NewTrain(s, perf.Copies(s))
			if err != nil {
				b.Fatal(err)
			}
			defer t.Free()
			// One call per layer copy first: the optimizer allocates its
			// state at a layer's first step.
			for range t.Layers {
				if err := op(t); err != nil {
					b.Fatal(err)
				}
			}
			if err := lora.Sync(); err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			for b.Loop() {
				if err := op(t); err != nil {
					b.Fatal(err)
				}
			}
			if err := lora.Sync(); err != nil {
				b.Fatal(err)
			}
			sec := b.Elapsed().Seconds() / float64(b.N)
			if f := flop(s); f > 0 {
				b.ReportMetric(f/sec/1e9, "GFLOP/s")
			}
			if v := bytes(s); v > 0 {
				b.ReportMetric(v/sec/1e9, "GB/s")
			}
		})
	}
}

func none(perf.Shape) float64 { return 0 }

// BenchmarkTrainForward is the fused unmerged Forward at the training
// shapes, the yardstick of the training targets.
func BenchmarkTrainForward(b *testing.B) {
	benchTrain(b, func(t *perf.Train) error { return t.Forward() },
		func(s perf.Shape) float64 { return s.BaseFLOP() + s.LoRAFLOP() }, none)
}

// BenchmarkBackward is Backward with dx (a layer inside a model) and without
// (the first layer, or a frozen input).
func BenchmarkBackward(b *testing.B) {
	b.Run("dx", func(b *testing.B) {
		benchTrain(b, (*perf.Train).Backward,
			func(s perf.Shape) float64 { return s.BackwardFLOP(true) }, none)
	})
	b.Run("nodx", func(b *testing.B) {
		benchTrain(b, (*perf.Train).BackwardNoDX,
			func(s perf.Shape) float64 { return s.BackwardFLOP(false) }, none)
	})
}

// BenchmarkAdamWStep is one AdamW step of A and B: bandwidth-bound, 28
// bytes per trainable parameter.
func BenchmarkAdamWStep(b *testing.B) {
	benchTrain(b, (*perf.Train).Step, none, perf.Shape.StepBytes)
}
