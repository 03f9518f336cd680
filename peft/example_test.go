package peft_test

import (
	"errors"
	"fmt"
	"log"
	"slices"

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

// Run and merge a module of a model whose Conv1D layers store their weight
// as [in, out], as GPT-2 does: the layer takes the weight's transpose,
// out×in, computes the model's forward x·W_stored + s·(x·Aᵀ)·Bᵀ, and its
// Merge leaves the transpose of PEFT's merged weight.
func ExampleModule_NewLayer() {
	m := &peft.Module{
		Name: "h.0.attn.c_proj", In: 2, Out: 3, Rank: 1, Scale: 2, FanInFanOut: true,
		A: []float32{1, 2},    // 1×2 (r×in)
		B: []float32{1, 0, 1}, // 3×1 (out×r)
	}
	stored := []float32{ // W as stored: in×out = 2×3
		1, 2, 3,
		4, 5, 6,
	}
	// Its transpose, out×in = 3×2: the layout of the layer.
	w, err := lora.NewMatrixFrom(3, 2, []float32{1, 4, 2, 5, 3, 6})
	if err != nil {
		log.Fatal(err)
	}
	defer w.Free()
	ws := must(lora.NewMatrixFrom(2, 3, stored))
	defer ws.Free()
	if _, err := m.NewLayer(ws); err != nil {
		fmt.Println("as stored:", errors.Is(err, lora.ErrShape))
	}
	layer, err := m.NewLayer(w)
	if err != nil {
		log.Fatal(err)
	}
	defer layer.Free()
	x := must(lora.NewMatrixFrom(1, 2, []float32{1, 1}))
	y := must(lora.NewMatrix(1, 3))
	defer x.Free()
	defer y.Free()
	if err := layer.Forward(y, x); err != nil {
		log.Fatal(err)
	}
	out := make([]float32, 3)
	if err := y.Read(out); err != nil {
		log.Fatal(err)
	}
	fmt.Println(out) // x·W_stored = [5 7 9], plus s·(x·Aᵀ)·Bᵀ = [6 0 6]
	if err := layer.Merge(); err != nil {
		log.Fatal(err)
	}
	merged := make([]float32, 6)
	if err := w.Read(merged); err != nil {
		log.Fatal(err)
	}
	fmt.Println(merged) // Wᵀ + s·B·A, out×in: transpose it to store it
	// Output:
	// as stored: true
	// [11 7 15]
	// [3 8 2 5 5 10]
}

// must returns m, and stops the example on an error.
func must(m *lora.Matrix, err error) *lora.Matrix {
	if err != nil {
		log.Fatal(err)
	}
	return m
}

// Read the 4-bit weights of a checkpoint that transformers saved with
// bitsandbytes, nf4 (here a small one in the package's testdata), and tell
// the tensors of their quantization state from the model's other tensors.
func ExampleSafetensors_QuantizedWeight() {
	st, err := peft.OpenSafetensors("testdata/nf4-tiny.safetensors")
	if err != nil {
		log.Fatal(err)
	}
	defer st.Close()
	names, err := st.QuantizedWeights()
	if err != nil {
		log.Fatal(err)
	}
	for _, name := range names {
		q, err := st.QuantizedWeight(name)
		if err != nil {
			log.Fatal(err)
		}
		fmt.Printf("%s: %d×%d from %s, blocks of %d, double-quantized %v\n", q.Name, q.Rows, q.Cols, q.DType, q.BlockSize, q.DoubleQuant)
		fmt.Printf("  %d bytes of codes, %d absmax; element 0: code %d, absmax %.4f\n", len(q.Codes), len(q.Absmax), q.Codes[0]>>4, q.Absmax[0])
	}
	for _, t := range st.Tensors() {
		if _, aux := peft.QuantizedAux(t.Name); !aux && !slices.Contains(names, t.Name) {
			fmt.Println("not quantized:", t.Name, t.DType, t.Shape)
		}
	}
	// Output:
	// model.layers.0.mlp.down_proj.weight: 8×64 from BF16, blocks of 64, double-quantized true
	//   256 bytes of codes, 8 absmax; element 0: code 8, absmax 0.0500
	// model.layers.0.self_attn.q_proj.weight: 4×32 from F16, blocks of 32, double-quantized false
	//   64 bytes of codes, 4 absmax; element 0: code 15, absmax 0.0996
	// not quantized: model.norm.weight F32 [8]
}

// Remove the quantization_config from a model's config.json, keeping the
// rest as it was written.
func ExampleWithoutQuantizationConfig() {
	config := []byte(`{
  "hidden_size": 64,
  "quantization_config": {
    "bnb_4bit_quant_type": "nf4",
    "load_in_4bit": true,
    "quant_method": "bitsandbytes"
  },
  "torch_dtype": "bfloat16"
}`)
	q, err := peft.ParseQuantizationConfig(config)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(q.QuantMethod, q.QuantType, q.Check())
	out, err := peft.WithoutQuantizationConfig(config)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(string(out))
	// Output:
	// bitsandbytes nf4 <nil>
	// {
	//   "hidden_size": 64,
	//   "torch_dtype": "bfloat16"
	// }
}

// Compute with a 4-bit weight of a bitsandbytes checkpoint as it is stored:
// an NF4 lora.Matrix, here the base of a layer with a fresh adapter.
func ExampleQuantizedWeight_Matrix() {
	st, err := peft.OpenSafetensors("testdata/nf4-tiny.safetensors")
	if err != nil {
		log.Fatal(err)
	}
	defer st.Close()
	q, err := st.QuantizedWeight("model.layers.0.self_attn.q_proj.weight")
	if err != nil {
		log.Fatal(err)
	}
	w, err := q.Matrix()
	if err != nil {
		log.Fatal(err)
	}
	defer w.Free()
	rows, cols := w.Dims()
	fmt.Printf("%v %d×%d, blocks of %d\n", w.DType(), rows, cols, w.BlockSize())
	l, err := lora.NewLayer(w, lora.Config{Rank: 2, Seed: 1})
	if err != nil {
		log.Fatal(err)
	}
	defer l.Free()
	fmt.Println("rank", l.Rank(), "over an", w.DType(), "W")
	// Output:
	// nf4 4×32, blocks of 32
	// rank 2 over an nf4 W
}
