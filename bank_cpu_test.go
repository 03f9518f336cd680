//go:build !cuda && !cudaemu

package lora

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

// TestBankRowsProduct checks the loop of small products against a float64
// reference on shapes above the parallel threshold, whichever strategy the
// cost model picks for Forward on this machine.
func TestBankRowsProduct(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, sh := range []struct{ n, in, out int }{{1, 5, 3}, {3, 1000, 77}, {17, 333, 400}} {
		x := make([]float32, sh.n*sh.in)
		w := make([]float32, sh.out*sh.in)
		for i := range x {
			x[i] = float32(rng.NormFloat64())
		}
		for i := range w {
			w[i] = float32(rng.NormFloat64())
		}
		y := make([]float32, sh.n*sh.out)
		for i := range y {
			y[i] = float32(math.NaN()) // must be overwritten
		}
		rowsProduct(y, x, w, sh.n, sh.in, sh.out)
		for i := range sh.n {
			for j := range sh.out {
				var sum, mag float64
				for c := range sh.in {
					p := float64(x[i*sh.in+c]) * float64(w[j*sh.in+c])
					sum += p
					mag += math.Abs(p)
				}
				if d := math.Abs(float64(y[i*sh.out+j]) - sum); !(d <= 2*float64(sh.in)*0x1p-24*mag) {
					t.Fatalf("%v: y[%d,%d] = %g, want %g", sh, i, j, y[i*sh.out+j], sum)
				}
			}
		}
	}
}

// TestBankGroups checks the counting sort: groups in order of first
// appearance, rows in their order within each group, -1 left out.
func TestBankGroups(t *testing.T) {
	ids := []int32{5, -1, 2, 5, 5, 0, 2, -1, 0}
	perm, groups := bankGroups(ids)
	if want := []int32{0, 3, 4, 2, 6, 5, 8}; !slices.Equal(perm, want) {
		t.Errorf("perm = %v, want %v", perm, want)
	}
	want := []bankGroup{{5, 0, 3}, {2, 3, 5}, {0, 5, 7}}
	if !slices.Equal(groups, want) {
		t.Errorf("groups = %v, want %v", groups, want)
	}
	if perm, groups := bankGroups([]int32{-1, -1}); len(perm) != 0 || len(groups) != 0 {
		t.Errorf("all -1: perm %v, groups %v", perm, groups)
	}
}

// TestBankModel checks that the calibrated model holds positive constants
// and makes the large product win when Sgemm's cost per multiply-add is far
// below the loop's, and the loop win in the opposite case.
func TestBankModel(t *testing.T) {
	if blasThreaded {
		t.Skip("a threaded BLAS always takes the large product")
	}
	bankModel.once.Do(bankCalibrate)
	if !(bankModel.tGemm > 0 && bankModel.tRows > 0 && bankModel.tByt > 0) {
		t.Fatalf("calibration: tGemm %g, tRows %g, tByt %g", bankModel.tGemm, bankModel.tRows, bankModel.tByt)
	}
	saved := bankModel.tGemm
	defer func() { bankModel.tGemm = saved }()
	bankModel.tGemm = bankModel.tRows / 100
	if bankUseRows(256, 4096, 4096) {
		t.Error("Sgemm 100× cheaper per multiply-add, yet the loop was chosen")
	}
	bankModel.tGemm = bankModel.tRows * 100
	if !bankUseRows(256, 4096, 4096) {
		t.Error("Sgemm 100× dearer per multiply-add, yet it was chosen")
	}
	// At n = 2, gemmNT reads W twice; the loop reads it once.
	bankModel.tGemm = saved
	if !bankUseRows(2, 4096, 4096) && bankModel.tRows*2*4096*4096 < 4*4096*4096*bankModel.tByt {
		t.Error("n = 2, bandwidth-bound: the loop reads W once and was not chosen")
	}
}
