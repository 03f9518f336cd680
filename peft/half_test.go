package peft

import (
	"testing"

	"github.com/golora/lora"
)

// TestNewLayerHalf merges modules, with and without fan_in_fan_out, into
// F16 and BF16 base weights through NewLayer, and checks each element
// against the same merge on a float32 W holding the same values, rounded
// once to the dtype (nearest even), bit for bit: the merge of a half W is
// the float32 merge, rounded once. The base values and the update are of
// sizes that make the rounding matter (W up to 1000 in F16, whose spacing
// there is 0.5).
func TestNewLayerHalf(t *testing.T) {
	for _, dt := range []lora.DType{lora.F16, lora.BF16} {
		for _, fanInFanOut := range []bool{false, true} {
			const in, out, r = 37, 29, 3
			m := &Module{Name: "m", In: in, Out: out, Rank: r, Scale: 1.25, FanInFanOut: fanInFanOut,
				A: make([]float32, r*in), B: make([]float32, out*r)}
			for i := range m.A {
				m.A[i] = float32(i%11)/3 - 1.7
			}
			for i := range m.B {
				m.B[i] = float32(i%7)/5 - 0.55
			}
			rows, cols := m.LayerShape()
			bits := make([]uint16, rows*cols)
			wide := make([]float32, rows*cols)
			for i := range bits {
				v := float32(i*i%2001) - 1000 + float32(i%3)/7
				if dt == lora.F16 {
					bits[i] = Float32ToF16(v)
					wide[i] = F16ToFloat32(bits[i])
				} else {
					bits[i] = Float32ToBF16(v)
					wide[i] = BF16ToFloat32(bits[i])
				}
			}
			w, err := lora.NewMatrixOf(dt, rows, cols)
			if err != nil {
				t.Fatal(err)
			}
			w32, err := lora.NewMatrixFrom(rows, cols, wide)
			if err != nil {
				t.Fatal(err)
			}
			if err := w.WriteBits(bits); err != nil {
				t.Fatal(err)
			}
			for _, x := range []*lora.Matrix{w, w32} {
				l, err := m.NewLayer(x)
				if err != nil {
					t.Fatalf("%v fan_in_fan_out %v: NewLayer: %v", dt, fanInFanOut, err)
				}
				if err := l.Merge(); err != nil {
					t.Fatalf("%v fan_in_fan_out %v: Merge: %v", dt, fanInFanOut, err)
				}
				l.Free()
			}
			got := make([]uint16, rows*cols)
			if err := w.ReadBits(got); err != nil {
				t.Fatal(err)
			}
			if err := w32.Read(wide); err != nil {
				t.Fatal(err)
			}
			bad := 0
			for i, v := range wide {
				want := Float32ToBF16(v)
				if dt == lora.F16 {
					want = Float32ToF16(v)
				}
				if got[i] != want {
					if bad++; bad <= 3 {
						t.Errorf("%v fan_in_fan_out %v: W[%d] = %#04x, want %#04x (%v rounded)", dt, fanInFanOut, i, got[i], want, v)
					}
				}
			}
			w.Free()
			w32.Free()
		}
	}
}
