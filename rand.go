package lora

import "math"

// The adapter's initial A is drawn on the host by a generator defined here,
// not by math/rand, so that a Seed gives the same A on every backend, every
// platform and every Go release.

// splitMix64 is Steele, Lea and Flood's SplitMix64: a 64-bit state advanced
// by a Weyl sequence and finalised by a bijective mixer.
type splitMix64 struct{ state uint64 }

func (g *splitMix64) next() uint64 {
	g.state += 0x9e3779b97f4a7c15
	z := g.state
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

// float64 returns a uniform float64 in [0, 1) with 53 random bits.
func (g *splitMix64) float64() float64 { return float64(g.next()>>11) / (1 << 53) }

// fillUniform fills dst with draws from U(−bound, bound).
func fillUniform(dst []float32, bound float32, seed uint64) {
	g := splitMix64{state: seed}
	b := float64(bound)
	for i := range dst {
		dst[i] = float32((2*g.float64() - 1) * b)
	}
}

// fillNormal fills dst with draws from N(0, std²) by the Box–Muller transform.
func fillNormal(dst []float32, std float64, seed uint64) {
	g := splitMix64{state: seed}
	for i := 0; i < len(dst); i += 2 {
		u1 := 1 - g.float64() // (0, 1]: log is finite
		u2 := g.float64()
		rad := std * math.Sqrt(-2*math.Log(u1))
		s, c := math.Sincos(2 * math.Pi * u2)
		dst[i] = float32(rad * c)
		if i+1 < len(dst) {
			dst[i+1] = float32(rad * s)
		}
	}
}
