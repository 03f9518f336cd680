package cpu

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/golora/lora/internal/reftest"
)

// TestAdamW8 checks the AdamW kernel against adamwGo bit for bit, on
// lengths with every remainder of its 8-wide passes, through AdamW (the
// kernel on the whole 8s, adamwGo on the rest, a and b split among
// goroutines), with moments of both signs and zero; and adamwGo against
// AdamW's formula in float64.
func TestAdamW8(t *testing.T) {
	rng := rand.New(rand.NewPCG(41, 42))
	h := Adam{Decay: 0.999, Step: 1e-3, InvSqrtBC2: 1.3, Eps: 1e-8, Beta1: 0.9, Beta2: 0.999}
	c := [8]float32{h.Beta1, 1 - h.Beta1, h.Beta2, 1 - h.Beta2, h.InvSqrtBC2, h.Eps, h.Decay, h.Step}
	for _, na := range []int{0, 1, 7, 8, 9, 63, 1000} {
		for _, nb := range []int{3, 16, 70001} {
			total := na + nb
			p := randF32(rng, total, 1)
			g := randF32(rng, total, 1)
			m := randF32(rng, total, 0.1)
			v := make([]float32, total)
			for i := range v {
				v[i] = float32(rng.Float64() * 0.01)
			}
			v[total/2], m[total/2], g[total/2] = 0, 0, 0
			wp, wm, wv := append([]float32(nil), p...), append([]float32(nil), m...), append([]float32(nil), v...)
			adamwGo(wp, g, wm, wv, &c)
			// float64: adamwGo's arithmetic within a few roundings.
			for i := range p {
				mi := float64(c[0])*float64(m[i]) + float64(c[1])*float64(g[i])
				vi := float64(c[2])*float64(v[i]) + float64(c[3])*float64(g[i])*float64(g[i])
				pi := float64(p[i])*float64(c[6]) - float64(c[7])*mi/(math.Sqrt(vi)*float64(c[4])+float64(c[5]))
				if d := reftest.Abs(float64(wp[i]) - pi); d > 1e-6*(reftest.Abs(pi)+1e-3) {
					t.Fatalf("na=%d nb=%d: adamwGo p[%d] = %g, float64 %g", na, nb, i, wp[i], pi)
				}
			}
			a, b := p[:na], p[na:]
			AdamW(a, b, g[:na], g[na:], m, v, h)
			for i := range p {
				if math.Float32bits(p[i]) != math.Float32bits(wp[i]) || math.Float32bits(m[i]) != math.Float32bits(wm[i]) ||
					math.Float32bits(v[i]) != math.Float32bits(wv[i]) {
					t.Fatalf("na=%d nb=%d: element %d: p, m, v = %g, %g, %g, want %g, %g, %g",
						na, nb, i, p[i], m[i], v[i], wp[i], wm[i], wv[i])
				}
			}
		}
	}
}
