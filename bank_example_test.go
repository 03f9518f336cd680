package lora_test

import (
	"fmt"
	"log"

	"github.com/golora/lora"
)

// A Bank applies to each row of a batch the adapter it names: here two
// adapters over one 2×2 W, and a row that names none (-1).
func ExampleBank() {
	w, _ := lora.NewMatrixFrom(2, 2, []float32{1, 0, 0, 1})
	defer w.Free()
	bank, err := lora.NewBank(w, lora.BankConfig{MaxRank: 1, Capacity: 2})
	if err != nil {
		log.Fatal(err)
	}
	defer bank.Free()
	add := func(a, b []float32, s float32) int {
		am, _ := lora.NewMatrixFrom(1, 2, a)
		bm, _ := lora.NewMatrixFrom(2, 1, b)
		defer am.Free() // the Bank keeps copies
		defer bm.Free()
		id, err := bank.Add(am, bm, s)
		if err != nil {
			log.Fatal(err)
		}
		return id
	}
	first := add([]float32{1, 1}, []float32{1, 0}, 2)  // ΔW = 2·B·A = [2 2; 0 0]
	second := add([]float32{0, 1}, []float32{0, 1}, 3) // ΔW = [0 0; 0 3]

	x, _ := lora.NewMatrixFrom(3, 2, []float32{1, 2, 1, 2, 1, 2})
	y, _ := lora.NewMatrix(3, 2)
	defer x.Free()
	defer y.Free()
	if err := bank.Forward(y, x, []int32{int32(first), int32(second), -1}); err != nil {
		log.Fatal(err)
	}
	out, _ := y.ReadAll()
	fmt.Println(bank.Len(), "adapters:", out)
	// Output: 2 adapters: [7 2 1 8 1 2]
}
