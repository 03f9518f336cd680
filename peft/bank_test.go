package peft

import (
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/golora/lora"
)

// TestAddTo adds modules to a Bank, with and without fan_in_fan_out, and
// checks Forward against x·(W + s·B·A)ᵀ computed in float64, W out×in for
// every module (the transpose of a fan_in_fan_out module's stored weight).
func TestAddTo(t *testing.T) {
	for _, fanInFanOut := range []bool{false, true} {
		const in, out, r, n = 5, 7, 3, 4
		m := &Module{Name: "m", In: in, Out: out, Rank: r, Scale: 1.5, FanInFanOut: fanInFanOut,
			A: make([]float32, r*in), B: make([]float32, out*r)}
		for i := range m.A {
			m.A[i] = float32(i%7) - 3
		}
		for i := range m.B {
			m.B[i] = float32(i%5)/4 - 0.5
		}
		rows, cols := m.LayerShape()
		w0 := make([]float32, rows*cols)
		for i := range w0 {
			w0[i] = float32(i%11)/10 - 0.5
		}
		w, err := lora.NewMatrixFrom(rows, cols, w0)
		if err != nil {
			t.Fatal(err)
		}
		defer w.Free()
		bank, err := lora.NewBank(w, lora.BankConfig{MaxRank: r, Capacity: 2})
		if err != nil {
			t.Fatal(err)
		}
		defer bank.Free()
		id, err := m.AddTo(bank)
		if err != nil || id != 0 || bank.Len() != 1 {
			t.Fatalf("fan_in_fan_out %v: AddTo = %d, %v; Len %d", fanInFanOut, id, err, bank.Len())
		}
		// ΔW = s·B·A, out×in.
		dw := make([]float64, rows*cols)
		for o := range out {
			for i := range in {
				var d float64
				for k := range r {
					d += float64(m.B[o*r+k]) * float64(m.A[k*in+i])
				}
				dw[o*in+i] = 1.5 * d
			}
		}
		xd := make([]float32, n*cols)
		for i := range xd {
			xd[i] = float32(i%9)/3 - 1
		}
		x, _ := lora.NewMatrixFrom(n, cols, xd)
		y, _ := lora.NewMatrix(n, rows)
		defer x.Free()
		defer y.Free()
		ids := []int32{0, -1, 0, 0}
		if err := bank.Forward(y, x, ids); err != nil {
			t.Fatal(err)
		}
		got := make([]float32, n*rows)
		if err := y.Read(got); err != nil {
			t.Fatal(err)
		}
		for i := range n {
			for p := range rows {
				var want float64
				for q := range cols {
					wv := float64(w0[p*cols+q])
					if ids[i] == 0 {
						wv += dw[p*cols+q]
					}
					want += float64(xd[i*cols+q]) * wv
				}
				if math.Abs(float64(got[i*rows+p])-want) > 1e-5*math.Max(1, math.Abs(want)) {
					t.Errorf("fan_in_fan_out %v: y[%d,%d] = %v, want %v", fanInFanOut, i, p, got[i*rows+p], want)
				}
			}
		}
	}
}

func TestAddToRefusals(t *testing.T) {
	good := func() *Module {
		return &Module{Name: "m", In: 3, Out: 2, Rank: 2, Scale: 1,
			A: []float32{1, 2, 3, 4, 5, 6}, B: []float32{1, 0, 0, 1}}
	}
	w, _ := lora.NewMatrix(2, 3)
	defer w.Free()
	bank, err := lora.NewBank(w, lora.BankConfig{MaxRank: 1, Capacity: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer bank.Free()
	wide, _ := lora.NewMatrix(3, 3)
	defer wide.Free()
	wideBank, err := lora.NewBank(wide, lora.BankConfig{MaxRank: 2, Capacity: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer wideBank.Free()
	nan := good()
	nan.B[1] = float32(math.NaN())
	short := good()
	short.A = short.A[:5]
	cases := []struct {
		name string
		m    *Module
		b    *lora.Bank
		want error
		msg  string
	}{
		{"nil module", nil, bank, lora.ErrNil, "module is nil"},
		{"nil Bank", good(), nil, lora.ErrNil, "Bank is nil"},
		{"W of another shape", good(), wideBank, lora.ErrShape, "W is 3×3, want 2×3"},
		{"rank above MaxRank", good(), bank, lora.ErrConfig, "MaxRank = 1"},
		{"NaN in B", nan, wideBankFor(t, 2, 3), lora.ErrNonFinite, "holds NaN"},
		{"inconsistent module", short, bank, ErrInconsistent, "A has 5 elements"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := c.b.Len()
			id, err := c.m.AddTo(c.b)
			if !errors.Is(err, c.want) || id != -1 {
				t.Fatalf("AddTo = %d, %v, want -1 and %v", id, err, c.want)
			}
			if !strings.HasPrefix(err.Error(), "peft: ") || !strings.Contains(err.Error(), c.msg) {
				t.Errorf("err = %q, want the prefix \"peft: \" and %q", err, c.msg)
			}
			if c.b.Len() != before {
				t.Errorf("Len = %d, was %d", c.b.Len(), before)
			}
		})
	}
}

// wideBankFor returns an empty Bank over a zero rows×cols weight, MaxRank 2.
func wideBankFor(t *testing.T, rows, cols int) *lora.Bank {
	w, err := lora.NewMatrix(rows, cols)
	if err != nil {
		t.Fatal(err)
	}
	b, err := lora.NewBank(w, lora.BankConfig{MaxRank: 2, Capacity: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Free(); w.Free() })
	return b
}
