package reftest

import (
	"math"
	"math/rand/v2"
	"sort"
)

// NF4 is bitsandbytes' NF4 table (functional.py, get_4bit_type("nf4")),
// as float32: written out here from bitsandbytes' constants, sharing
// nothing with the code under test.
var NF4 = [16]float32{
	-1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453,
	-0.28444138169288635, -0.18477343022823334, -0.09105003625154495, 0.0,
	0.07958029955625534, 0.16093020141124725, 0.24611230850220184, 0.33791524171829224,
	0.44070982260894775, 0.5626170039176941, 0.7229568362236023, 1.0,
}

// QuantizeNF4 quantizes src (row-major) into NF4 codes (two a byte, the
// element of even index in the high nibble, an odd count padded with code
// 7) and the absmax of each block of block elements, by the rule of
// bitsandbytes' default backend written out in float64, each step rounded
// to float32 where the rule rounds (a float64 division or product of
// float32 values, rounded once to float32, is the correctly rounded float32
// result): the midpoints (NF4[i] + NF4[i+1]) / 2, the reciprocal of a full
// block's absmax max(max|x|, 1e-38) and the product x · reciprocal, or for a
// short last block the quotient x / am with am = max(max|x|, 1e-38), which
// is stored (a full block stores max|x| as it is). The code is the count
// of midpoints strictly below the clamped scaled value, by binary search.
func QuantizeNF4(src []float32, block int) (codes []byte, absmax []float32) {
	var bounds [15]float64
	for i := range bounds {
		bounds[i] = float64(float32((float64(NF4[i]) + float64(NF4[i+1])) / 2))
	}
	n := len(src)
	codes = make([]byte, (n+1)/2)
	for i := range codes {
		codes[i] = 0x77
	}
	tiny := float64(float32(1e-38))
	for b0 := 0; b0 < n; b0 += block {
		b1 := min(n, b0+block)
		var am float64
		for _, v := range src[b0:b1] {
			am = math.Max(am, math.Abs(float64(v)))
		}
		var scale func(x float64) float64
		if b1-b0 == block {
			absmax = append(absmax, float32(am))
			inv := float64(float32(1 / math.Max(am, tiny)))
			scale = func(x float64) float64 { return float64(float32(x * inv)) }
		} else {
			am = math.Max(am, tiny)
			absmax = append(absmax, float32(am))
			scale = func(x float64) float64 { return float64(float32(x / am)) }
		}
		for j := b0; j < b1; j++ {
			s := math.Min(math.Max(scale(float64(src[j])), -1), 1)
			k := byte(sort.Search(15, func(i int) bool { return !(bounds[i] < s) }))
			if j%2 == 0 {
				codes[j/2] = codes[j/2]&0x0f | k<<4
			} else {
				codes[j/2] = codes[j/2]&0xf0 | k
			}
		}
	}
	return codes, absmax
}

// NF4Values returns the values of n NF4 elements: NF4[code] · absmax of
// their block, one float32 rounding each.
func NF4Values(codes []byte, absmax []float32, block, n int) []float32 {
	v := make([]float32, n)
	for j := range v {
		k := codes[j/2] & 15
		if j%2 == 0 {
			k = codes[j/2] >> 4
		}
		v[j] = NF4[k] * absmax[j/block]
	}
	return v
}

// RandomNF4 returns the state of n random NF4 elements in blocks of block:
// random codes (every code, the pad nibble of an odd n included), random
// scales in [0.01, 1.01), and the elements' values (NF4Values).
func RandomNF4(rng *rand.Rand, n, block int) (codes []byte, absmax, values []float32) {
	codes = make([]byte, (n+1)/2)
	for i := range codes {
		codes[i] = byte(rng.IntN(256))
	}
	absmax = Uniform(rng, (n+block-1)/block, 1)
	for i, v := range absmax {
		absmax[i] = float32(math.Abs(float64(v))) + 0.01
	}
	return codes, absmax, NF4Values(codes, absmax, block, n)
}
