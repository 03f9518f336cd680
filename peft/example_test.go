package peft_test

import (
	"fmt"
	"log"

	"github.com/golora/lora"
	"github.com/golora/lora/peft"
)

// Load a PEFT adapter (here the GPT-2 adapter in the repository's testdata) and
// list what it adapts.
func ExampleLoad() {
	a, err := peft.Load("../testdata/peft-gpt2-lora")
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(a.Config.PeftType, "r =", a.Config.R, "alpha =", a.Config.LoraAlpha)
	for _, m := range a.Modules[:3] {
		rows, cols := m.WeightShape()
		fmt.Printf("%s: %d×%d, rank %d, scale %g\n", m.Weight(), rows, cols, m.Rank, m.Scale)
	}
	lp, _ := a.Params()
	fmt.Println(len(a.Modules), "modules,", lp, "parameters")
	// Output:
	// LORA r = 8 alpha = 32
	// transformer.h.0.attn.c_attn.weight: 768×2304, rank 8, scale 4
	// transformer.h.0.attn.c_proj.weight: 768×768, rank 8, scale 4
	// transformer.h.0.mlp.c_proj.weight: 3072×768, rank 8, scale 4
	// 36 modules, 811008 parameters
}

// Merge a module into a base weight stored as GPT-2's Conv1D stores it,
// [in, out]: the layer adds s·(B·A)ᵀ, as PEFT does for fan_in_fan_out.
func ExampleModule_NewLayer() {
	m := &peft.Module{
		Name: "h.0.attn.c_proj", In: 2, Out: 3, Rank: 1, Scale: 2, FanInFanOut: true,
		A: []float32{1, 2},    // 1×2 (r×in)
		B: []float32{1, 0, 1}, // 3×1 (out×r)
	}
	// W as stored: in×out = 2×3, zero.
	w, err := lora.NewMatrix(2, 3)
	if err != nil {
		log.Fatal(err)
	}
	defer w.Free()
	layer, err := m.NewLayer(w)
	if err != nil {
		log.Fatal(err)
	}
	defer layer.Free()
	if err := layer.Merge(); err != nil {
		log.Fatal(err)
	}
	got := make([]float32, 6)
	if err := w.Read(got); err != nil {
		log.Fatal(err)
	}
	fmt.Println(got[:3]) // row 0 of s·(B·A)ᵀ: s·A[0]·B
	fmt.Println(got[3:]) // row 1: s·A[1]·B
	// Output:
	// [2 0 2]
	// [4 0 4]
}
