package cpu

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/golora/lora/internal/reftest"
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
					mag += reftest.Abs(p)
				}
				if d := reftest.Abs(float64(y[i*sh.out+j]) - sum); !(d <= 2*float64(sh.in)*0x1p-24*mag) {
					t.Fatalf("%v: y[%d,%d] = %g, want %g", sh, i, j, y[i*sh.out+j], sum)
				}
			}
		}
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

// TestBankExpand checks BankExpand against a float64 reference: three
// groups of rows (one interleaved, so that its rows are gathered, one a run
// of consecutive rows, one past bankChunkRows rows), adapters of different
// ranks, rows of no adapter left as they were.
func TestBankExpand(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	const n, in, out = 40, 70, 37
	ranks := []int{3, 8, 1}
	ids := make([]int, n) // -1: no adapter
	for i := range ids {
		switch {
		case i < 20 && i%2 == 0:
			ids[i] = 0
		case i >= 20 && i < 24:
			ids[i] = 1
		case i >= 24 && i < 39 || i == 1:
			ids[i] = 2
		default:
			ids[i] = -1
		}
	}
	var perm []int32
	var groups []BankGroup
	as, bs := make([][]float32, 3), make([][]float32, 3)
	for g, r := range ranks {
		as[g], bs[g] = randF32(rng, r*in, 1), randF32(rng, out*r, 1)
		bt := make([]float32, r*out)
		for j := range out {
			for k := range r {
				bt[k*out+j] = bs[g][j*r+k]
			}
		}
		start := len(perm)
		for i, id := range ids {
			if id == g {
				perm = append(perm, int32(i))
			}
		}
		groups = append(groups, BankGroup{Start: start, End: len(perm), A: as[g], BT: bt, R: r, Scale: float32(g) + 0.5})
	}
	x := randF32(rng, n*in, 1)
	y0 := randF32(rng, n*out, 1)
	y := slices.Clone(y0)
	BankExpand(y, x, in, out, perm, groups)
	for i, id := range ids {
		for j := range out {
			want, mag := float64(y0[i*out+j]), reftest.Abs(float64(y0[i*out+j]))
			if id >= 0 {
				r, s := ranks[id], float64(id)+0.5
				for k := range r {
					var tk, tm float64
					for c := range in {
						p := float64(x[i*in+c]) * float64(as[id][k*in+c])
						tk += p
						tm += reftest.Abs(p)
					}
					want += s * tk * float64(bs[id][j*r+k])
					mag += s * tm * reftest.Abs(float64(bs[id][j*r+k]))
				}
			}
			if d := reftest.Abs(float64(y[i*out+j]) - want); !(d <= accTol(in+10)*mag) {
				t.Fatalf("row %d (adapter %d): y[%d] = %g, want %g", i, id, j, y[i*out+j], want)
			}
		}
	}
}

// TestBankProduct checks every strategy of BankProduct against a float64
// reference: the fused kernel at small n, the packed product past
// gemmMinRows, and the loop of small products and the one large product
// (forced through bankModel), with GOMAXPROCS 7 for uneven splits.
func TestBankProduct(t *testing.T) {
	manyProcs(t)
	rng := rand.New(rand.NewPCG(9, 10))
	bankModel.once.Do(bankCalibrate)
	tGemm, tRows := bankModel.tGemm, bankModel.tRows
	t.Cleanup(func() { bankModel.tGemm, bankModel.tRows = tGemm, tRows })
	const in, out = 300, 97
	w := randF32(rng, out*in, 1)
	for _, n := range []int{1, 3, gemvRows + 1, 40, gemmMinRows + 5} {
		x := randF32(rng, n*in, 1)
		want, mag := refNT(x, w, n, out, in)
		for _, rows := range []bool{false, true} {
			// bankUseRows picks the loop when tRows is far below tGemm.
			bankModel.tGemm, bankModel.tRows = 1, 1e-6
			if !rows {
				bankModel.tRows = 1e3
			}
			y := nanFill(n * out)
			BankProduct(y, x, w, n, in, out)
			within(t, fmt.Sprintf("n=%d rows=%v", n, rows), y, want, mag, accTol(in))
		}
	}
}
