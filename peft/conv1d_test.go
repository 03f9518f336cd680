package peft

import (
	"errors"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/golora/lora"
	"github.com/golora/lora/internal/reftest"
)

// TestConv1DForward runs GPT-2 modules of the fixture (fan_in_fan_out) on a
// random base weight W stored as Conv1D stores it, In×Out, through
// Module.NewLayer (Forward, Merge, Forward merged) and Module.AddTo (a
// Bank's Forward), both given Wᵀ (Out×In), and checks each against PEFT's
// forward x·W + s·(x·Aᵀ)·Bᵀ computed in float64 from W as stored
// (reftest.Conv1D) and PEFT's merge W + s·(B·A)ᵀ: on a non-square module
// (c_attn, 768 → 2304; mlp.c_proj, 3072 → 768) and on a square one
// (attn.c_proj, 768 → 768), which a layout check cannot guard. The weight as
// stored is refused where its shape tells it apart.
//
// Bounds: y is a float32 sum of In products of x and W and of R products
// of T and B, T itself a sum of In products, and a rounding of s·T: within
// γ(In + R + 3) of the magnitudes, as in the root package's tests; the
// merged W is W + a float32 sum of R products scaled by s: γ(R + 2); the
// merged Forward adds the merge's error to that of a product of In terms.
func TestConv1DForward(t *testing.T) {
	a, err := Load(fixtureDir)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(401, 402))
	for _, name := range []string{"transformer.h.0.attn.c_attn", "transformer.h.0.attn.c_proj", "transformer.h.1.mlp.c_proj"} {
		m, err := a.Module(name)
		if err != nil {
			t.Fatal(err)
		}
		if !m.FanInFanOut {
			t.Fatalf("%s: not fan_in_fan_out", name)
		}
		t.Run(name, func(t *testing.T) {
			const n = 3
			in, out, r := m.In, m.Out, m.Rank
			sh := reftest.Shape{N: n, In: in, Out: out, R: r}
			stored := reftest.Normal(rng, in*out, 1/math.Sqrt(float64(in)))
			wt := make([]float32, out*in) // Wᵀ, written out here
			for c := range in {
				for j := range out {
					wt[j*in+c] = stored[c*out+j]
				}
			}
			xd := reftest.Normal(rng, n*in, 1)
			want, mag := reftest.Conv1D(sh, float64(m.Scale), xd, stored, m.A, m.B)
			base, baseMag := reftest.Conv1D(sh, 0, xd, stored, nil, nil)
			gam := reftest.Gamma(in + r + 3)

			w := newMatrix(t, out, in, wt)
			x := newMatrix(t, n, in, xd)
			y := newMatrix(t, n, out, nil)
			l, err := m.NewLayer(w)
			if err != nil {
				t.Fatal(err)
			}
			defer l.Free()
			if err := l.Forward(y, x); err != nil {
				t.Fatal(err)
			}
			reftest.Close(t, "Forward y", readMatrix(t, y), want, mag, gam)

			// The Bank: rows 0 and 2 with the adapter, row 1 without.
			bank, err := lora.NewBank(newMatrix(t, out, in, wt), lora.BankConfig{MaxRank: r, Capacity: 2})
			if err != nil {
				t.Fatal(err)
			}
			defer bank.Free()
			id, err := m.AddTo(bank)
			if err != nil {
				t.Fatal(err)
			}
			if err := bank.Forward(y, x, []int32{int32(id), -1, int32(id)}); err != nil {
				t.Fatal(err)
			}
			mixed, mixedMag := append([]float64(nil), want...), append([]float64(nil), mag...)
			copy(mixed[out:2*out], base[out:2*out])
			copy(mixedMag[out:2*out], baseMag[out:2*out])
			reftest.Close(t, "Bank y", readMatrix(t, y), mixed, mixedMag, gam)

			// Merge: the transpose of PEFT's W + s·(B·A)ᵀ.
			if err := l.Merge(); err != nil {
				t.Fatal(err)
			}
			got := readMatrix(t, w)
			gotStored := make([]float32, in*out)
			for c := range in {
				for j := range out {
					gotStored[c*out+j] = got[j*in+c]
				}
			}
			peftMerged, peftMag := make([]float64, in*out), make([]float64, in*out)
			for c := range in {
				for j := range out {
					var d, dm float64
					for k := range r {
						p := float64(m.B[j*r+k]) * float64(m.A[k*in+c])
						d += p
						dm += math.Abs(p)
					}
					s := float64(m.Scale)
					peftMerged[c*out+j] = float64(stored[c*out+j]) + s*d
					peftMag[c*out+j] = math.Abs(float64(stored[c*out+j])) + math.Abs(s)*dm
				}
			}
			reftest.Close(t, "merged W (stored layout)", gotStored, peftMerged, peftMag, reftest.Gamma(r+2))
			if err := l.Forward(y, x); err != nil {
				t.Fatal(err)
			}
			reftest.Close(t, "merged Forward y", readMatrix(t, y), want, mag, gam+reftest.Gamma(r+2))

			// The weight as stored, In×Out, is refused where it differs
			// in shape from Out×In.
			if in != out {
				ws := newMatrix(t, in, out, stored)
				if _, err := m.NewLayer(ws); !errors.Is(err, lora.ErrShape) || !strings.Contains(err.Error(), "as stored") {
					t.Errorf("NewLayer on W as stored: %v, want ErrShape saying so", err)
				}
				sb, err := lora.NewBank(ws, lora.BankConfig{MaxRank: r, Capacity: 1})
				if err != nil {
					t.Fatal(err)
				}
				defer sb.Free()
				if id, err := m.AddTo(sb); !errors.Is(err, lora.ErrShape) || id != -1 || sb.Len() != 0 {
					t.Errorf("AddTo a Bank on W as stored: %d, %v (Len %d), want -1 and ErrShape", id, err, sb.Len())
				}
			}
		})
	}
}

func newMatrix(t *testing.T, rows, cols int, data []float32) *lora.Matrix {
	t.Helper()
	var m *lora.Matrix
	var err error
	if data == nil {
		m, err = lora.NewMatrix(rows, cols)
	} else {
		m, err = lora.NewMatrixFrom(rows, cols, data)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Free)
	return m
}

func readMatrix(t *testing.T, m *lora.Matrix) []float32 {
	t.Helper()
	v, err := m.ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestRankAboveMinInOut saves and loads an adapter whose rank exceeds
// min(in, out), as PEFT makes them (r = 80 on a 64×64 weight, and r = 9 on
// a 5×7 one), and merges its modules through NewLayer: each merged W
// against W + s·B·A in float64, within γ(R + 2) of the magnitudes (a
// float32 sum of R products, scaled, added to W).
func TestRankAboveMinInOut(t *testing.T) {
	rng := rand.New(rand.NewPCG(403, 404))
	for _, c := range []struct{ in, out, r int }{{64, 64, 80}, {5, 7, 9}} {
		cfg := &Config{PeftType: "LORA", R: c.r, LoraAlpha: 16, TargetModules: []string{"q_proj"}, Bias: "none"}
		m := &Module{Name: "model.layers.0.self_attn.q_proj", In: c.in, Out: c.out, Rank: c.r,
			A: reftest.Normal(rng, c.r*c.in, 0.1), B: reftest.Normal(rng, c.out*c.r, 0.1)}
		dir := t.TempDir()
		if err := Save(dir, &Adapter{Config: cfg, Modules: []*Module{m}}); err != nil {
			t.Fatalf("Save of an r = %d adapter on %d×%d: %v", c.r, c.out, c.in, err)
		}
		a, err := Load(dir)
		if err != nil {
			t.Fatalf("Load of an r = %d adapter on %d×%d: %v", c.r, c.out, c.in, err)
		}
		got := a.Modules[0]
		if got.Rank != c.r || got.Scale != float32(16/float64(c.r)) {
			t.Fatalf("loaded rank %d, scale %g", got.Rank, got.Scale)
		}
		w0 := reftest.Normal(rng, c.out*c.in, 1)
		w := newMatrix(t, c.out, c.in, w0)
		l, err := got.NewLayer(w)
		if err != nil {
			t.Fatal(err)
		}
		if err := l.Merge(); err != nil {
			t.Fatal(err)
		}
		want, _, mag := reftest.Merge(c.out, c.in, c.r, float64(got.Scale), w0, got.A, got.B)
		reftest.Close(t, "merged W", readMatrix(t, w), want, mag, reftest.Gamma(c.r+2))
		l.Free()
	}
}
