package lora_test

import (
	"fmt"
	"log"
	"math"
	"math/rand/v2"

	"github.com/golora/lora"
)

// Fine-tuning a frozen layer: a teacher W* = W + ΔW* differs from the base
// weight W by a change of rank 2, and a rank-2 adapter learns it from
// examples of the teacher's outputs. Only A and B train; W stays as it was
// until Merge folds the trained adapter into it.
func Example_training() {
	const n, in, out, rank = 32, 8, 6, 2
	rng := rand.New(rand.NewPCG(1, 2))
	randn := func(count int, std float64) []float32 {
		s := make([]float32, count)
		for i := range s {
			s[i] = float32(rng.NormFloat64() * std)
		}
		return s
	}

	// The frozen base weight W, and the teacher's W* = W + B*·A*.
	wData := randn(out*in, 0.35)
	w, _ := lora.NewMatrixFrom(out, in, wData)
	wStar, _ := lora.NewMatrixFrom(out, in, wData)
	aStar, _ := lora.NewMatrixFrom(rank, in, randn(rank*in, 0.35))
	bStar, _ := lora.NewMatrixFrom(out, rank, randn(out*rank, 1))
	teacher, err := lora.NewLayerFrom(wStar, aStar, bStar, 1)
	if err != nil {
		log.Fatal(err)
	}
	defer wStar.Free()
	defer teacher.Free()
	if err := teacher.Merge(); err != nil {
		log.Fatal(err)
	}

	// The training data: inputs x ~ N(0, 1) and the teacher's outputs.
	x, _ := lora.NewMatrixFrom(n, in, randn(n*in, 1))
	target, _ := lora.NewMatrix(n, out)
	if err := lora.Linear(target, x, wStar); err != nil {
		log.Fatal(err)
	}

	// The student: a new adapter on W, initialised as PEFT does (B = 0).
	layer, err := lora.NewLayer(w, lora.Config{Rank: rank, Seed: 3})
	if err != nil {
		log.Fatal(err)
	}
	defer w.Free()
	defer layer.Free()
	opt := lora.NewAdamW(0.05)
	defer opt.Free()

	y, _ := lora.NewMatrix(n, out)
	dy, _ := lora.NewMatrix(n, out)
	dA, _ := lora.NewMatrix(rank, in)
	dB, _ := lora.NewMatrix(out, rank)
	for _, m := range []*lora.Matrix{x, target, y, dy, dA, dB} {
		defer m.Free()
	}

	var first, last float32
	for step := 0; step <= 120; step++ {
		if err := layer.Forward(y, x); err != nil {
			log.Fatal(err)
		}
		loss, err := lora.MSE(dy, y, target) // loss, and dy = ∂loss/∂y
		if err != nil {
			log.Fatal(err)
		}
		if step == 0 {
			first = loss
		}
		last = loss
		// x is the input data, so no dx: pass nil.
		if err := layer.Backward(nil, dA, dB, dy, x); err != nil {
			log.Fatal(err)
		}
		if err := opt.Step(layer, dA, dB); err != nil {
			log.Fatal(err)
		}
	}

	frozen := make([]float32, out*in)
	if err := w.Read(frozen); err != nil {
		log.Fatal(err)
	}
	unchanged := true
	for i := range frozen {
		unchanged = unchanged && frozen[i] == wData[i]
	}

	// Merged, the layer is the teacher: x·Wᵀ alone gives its outputs.
	if err := layer.Merge(); err != nil {
		log.Fatal(err)
	}
	if err := layer.Forward(y, x); err != nil {
		log.Fatal(err)
	}
	got, want := make([]float32, n*out), make([]float32, n*out)
	if err := y.Read(got); err != nil {
		log.Fatal(err)
	}
	if err := target.Read(want); err != nil {
		log.Fatal(err)
	}
	var worst float64
	for i := range got {
		worst = math.Max(worst, math.Abs(float64(got[i]-want[i])))
	}

	fmt.Printf("trainable parameters: %d of %d\n", rank*(in+out), in*out)
	fmt.Println("loss fell below 1e-3 of its start:", last < 1e-3*first)
	fmt.Println("W unchanged by training:", unchanged)
	fmt.Println("merged layer within 0.05 of the teacher:", worst < 0.05)
	// Output:
	// trainable parameters: 28 of 48
	// loss fell below 1e-3 of its start: true
	// W unchanged by training: true
	// merged layer within 0.05 of the teacher: true
}
