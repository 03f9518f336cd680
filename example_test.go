package lora_test

import (
	"errors"
	"fmt"
	"log"
	"math"

	"github.com/golora/lora"
)

// A layer on a 4×3 base weight with a rank-2 adapter: run it, merge the
// adapter into W, and check that the merged layer gives the same outputs.
func Example() {
	// The frozen base weight W (out×in = 4×3), row-major like nn.Linear.
	w, err := lora.NewMatrixFrom(4, 3, []float32{
		1, 0, 0,
		0, 1, 0,
		0, 0, 1,
		1, 1, 1,
	})
	if err != nil {
		log.Fatal(err)
	}
	defer w.Free()

	// An adapter of rank 2 with A (2×3) and B (4×2) as a trained one would
	// be; scale s = 0.5.
	a, _ := lora.NewMatrixFrom(2, 3, []float32{1, 2, 3, 0, 1, 0})
	b, _ := lora.NewMatrixFrom(4, 2, []float32{1, 0, 0, 1, 2, 0, 0, 2})
	layer, err := lora.NewLayerFrom(w, a, b, 0.5)
	if err != nil {
		log.Fatal(err)
	}
	defer layer.Free() // frees A and B, never W

	x, _ := lora.NewMatrixFrom(2, 3, []float32{1, 0, 0, 0, 1, 1})
	defer x.Free()
	y, _ := lora.NewMatrix(2, 4)
	defer y.Free()

	// Unmerged: y = x·Wᵀ + s·(x·Aᵀ)·Bᵀ.
	if err := layer.Forward(y, x); err != nil {
		log.Fatal(err)
	}
	unmerged := make([]float32, 8)
	if err := y.Read(unmerged); err != nil {
		log.Fatal(err)
	}

	// Merged: W ← W + s·B·A, then y = x·Wᵀ alone.
	if err := layer.Merge(); err != nil {
		log.Fatal(err)
	}
	if err := layer.Forward(y, x); err != nil {
		log.Fatal(err)
	}
	merged := make([]float32, 8)
	if err := y.Read(merged); err != nil {
		log.Fatal(err)
	}

	fmt.Println("unmerged:", unmerged)
	fmt.Println("merged:  ", merged)
	var diff float64
	for i := range merged {
		diff = math.Max(diff, math.Abs(float64(merged[i]-unmerged[i])))
	}
	fmt.Println("largest difference:", diff)
	// Output:
	// unmerged: [1.5 0 1 1 2.5 1.5 6 3]
	// merged:   [1.5 0 1 1 2.5 1.5 6 3]
	// largest difference: 0
}

// A new adapter starts with B = 0, so the adapted layer computes exactly
// what its base layer computes until training moves B.
func ExampleNewLayer() {
	w, _ := lora.NewMatrixFrom(3, 4, []float32{
		1, 2, 3, 4,
		5, 6, 7, 8,
		9, 10, 11, 12,
	})
	defer w.Free()
	layer, err := lora.NewLayer(w, lora.Config{Rank: 2, Alpha: 16, Seed: 1})
	if err != nil {
		log.Fatal(err)
	}
	defer layer.Free()

	x, _ := lora.NewMatrixFrom(1, 4, []float32{1, 1, 1, 1})
	y, _ := lora.NewMatrix(1, 3)
	defer x.Free()
	defer y.Free()
	if err := layer.Forward(y, x); err != nil {
		log.Fatal(err)
	}
	out := make([]float32, 3)
	_ = y.Read(out)
	fmt.Println("y:", out)
	fmt.Println("rank:", layer.Rank(), "scale:", layer.Scale())
	// Output:
	// y: [10 26 42]
	// rank: 2 scale: 8

}

// nn.Linear with a bias: y = x·Wᵀ + b, the bias added to every row of the
// batch by AddBias; ReadAll returns the result in a new slice.
func ExampleAddBias() {
	w, _ := lora.NewMatrixFrom(2, 3, []float32{1, 0, 0, 0, 1, 1})
	bias, _ := lora.NewMatrixFrom(1, 2, []float32{10, 20})
	x, _ := lora.NewMatrixFrom(2, 3, []float32{1, 2, 3, 4, 5, 6})
	y, _ := lora.NewMatrix(2, 2)
	for _, m := range []*lora.Matrix{w, bias, x, y} {
		defer m.Free()
	}
	if err := lora.Linear(y, x, w); err != nil {
		log.Fatal(err)
	}
	if err := lora.AddBias(y, bias); err != nil {
		log.Fatal(err)
	}
	out, err := y.ReadAll()
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(out)
	// Output:
	// [11 25 14 31]
}

// Merge refuses an update that would overflow float32 anywhere in W, and
// leaves W as it was.
func ExampleLayer_Merge_overflow() {
	w, _ := lora.NewMatrixFrom(1, 2, []float32{1, 2})
	defer w.Free()
	a, _ := lora.NewMatrixFrom(1, 2, []float32{1e20, 1e20})
	b, _ := lora.NewMatrixFrom(1, 1, []float32{1e20})
	layer, err := lora.NewLayerFrom(w, a, b, 1)
	if err != nil {
		log.Fatal(err)
	}
	defer layer.Free()
	err = layer.Merge()
	fmt.Println(errors.Is(err, lora.ErrNonFinite), layer.Merged())
	kept, _ := w.ReadAll()
	fmt.Println(kept)
	// Output:
	// true false
	// [1 2]
}
