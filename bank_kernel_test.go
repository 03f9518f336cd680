//go:build cuda || cudaemu

package lora

import (
	"testing"

	"github.com/golora/lora/kernels"
)

// TestBankPack checks the packing of a decode batch's ids into the six
// kernel parameters against the kernels' decoding (lora_bank_id in
// kernels/bank.cu, transcribed): ids[i] + 1 in 21 bits, three to a word.
func TestBankPack(t *testing.T) {
	if kernels.BankNMax > 18 {
		t.Fatalf("BankNMax = %d: six words of three ids hold 18", kernels.BankNMax)
	}
	if MaxBankCapacity >= 1<<21-1 {
		t.Fatalf("MaxBankCapacity = %d: an id + 1 must fit 21 bits", MaxBankCapacity)
	}
	decode := func(p [6]uint64, i int) int32 {
		return int32((p[i/3]>>(21*(i%3)))&0x1fffff) - 1
	}
	cases := [][]int32{
		{-1},
		{0},
		{MaxBankCapacity - 1},
		{-1, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, MaxBankCapacity - 1},
		{MaxBankCapacity - 1, -1, MaxBankCapacity - 2, 5, -1, -1, 7},
	}
	for _, ids := range cases {
		p := bankPack(ids)
		for i, id := range ids {
			if got := decode(p, i); got != id {
				t.Errorf("ids %v: row %d decodes to %d", ids, i, got)
			}
		}
		for i := len(ids); i < 18; i++ {
			if got := decode(p, i); got != -1 {
				t.Errorf("ids %v: row %d beyond n decodes to %d, want -1", ids, i, got)
			}
		}
	}
}
