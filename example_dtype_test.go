package lora_test

import (
	"errors"
	"fmt"
	"log"

	"github.com/golora/lora"
)

// A bfloat16 base weight, as models are stored today, with a float32
// adapter, as PEFT keeps one: the layer runs on the 16-bit W directly, and
// Merge rounds W + s·B·A once to bfloat16.
func ExampleNewMatrixOf() {
	w, err := lora.NewMatrixOf(lora.BF16, 2, 3)
	if err != nil {
		log.Fatal(err)
	}
	defer w.Free()
	// Write rounds to nearest even: 1.00390625 is halfway between the
	// bfloat16 neighbours 1 and 1.0078125, and goes to 1.
	if err := w.Write([]float32{1.00390625, 2, 0, 0, 0.5, -3}); err != nil {
		log.Fatal(err)
	}
	bits := make([]uint16, 6)
	if err := w.ReadBits(bits); err != nil {
		log.Fatal(err)
	}
	fmt.Printf("W is %v, %d bytes an element; W[0,0] is stored as %#04x\n", w.DType(), w.DType().Size(), bits[0])

	a, _ := lora.NewMatrixFrom(1, 3, []float32{1, 0, 1})
	b, _ := lora.NewMatrixFrom(2, 1, []float32{0.25, 0.5})
	layer, err := lora.NewLayerFrom(w, a, b, 2)
	if err != nil {
		log.Fatal(err)
	}
	defer layer.Free()

	// x and y in bfloat16 as well; products accumulate in float32.
	x, _ := lora.NewMatrixOf(lora.BF16, 1, 3)
	defer x.Free()
	y, _ := lora.NewMatrixOf(lora.BF16, 1, 2)
	defer y.Free()
	if err := x.Write([]float32{1, 1, 1}); err != nil {
		log.Fatal(err)
	}
	if err := layer.Forward(y, x); err != nil {
		log.Fatal(err)
	}
	out := make([]float32, 2)
	if err := y.Read(out); err != nil {
		log.Fatal(err)
	}
	fmt.Println("y =", out)

	if err := layer.Merge(); err != nil {
		log.Fatal(err)
	}
	merged := make([]float32, 6)
	if err := w.Read(merged); err != nil {
		log.Fatal(err)
	}
	fmt.Println("merged W =", merged)

	// A finite value beyond a dtype's range is refused, nothing written.
	h, _ := lora.NewMatrixOf(lora.F16, 1, 1)
	defer h.Free()
	err = h.Write([]float32{1e5})
	fmt.Println(errors.Is(err, lora.ErrNonFinite))
	// Output:
	// W is bf16, 2 bytes an element; W[0,0] is stored as 0x3f80
	// y = [4 -0.5]
	// merged W = [1.5 2 0.5 1 0.5 -2]
	// true
}
