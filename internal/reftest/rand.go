package reftest

import "math/rand/v2"

// Normal returns n values of the standard normal distribution times scale,
// rounded to float32.
func Normal(rng *rand.Rand, n int, scale float64) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(rng.NormFloat64() * scale)
	}
	return v
}

// Uniform returns n values uniform in [−scale, scale), rounded to float32:
// bounded, so that a test may scale them up to the edge of float32's range.
func Uniform(rng *rand.Rand, n int, scale float64) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32((2*rng.Float64() - 1) * scale)
	}
	return v
}

// F64 returns the elements of v widened to float64 (exactly).
func F64(v []float32) []float64 {
	d := make([]float64, len(v))
	for i, x := range v {
		d[i] = float64(x)
	}
	return d
}

// NormalHalf returns n values of the standard normal distribution times
// scale, rounded to float32 and then to the 16-bit format f (to nearest,
// ties to even): their patterns, and their values (exact in float32).
func NormalHalf(rng *rand.Rand, f Format, n int, scale float64) (bits []uint16, vals []float32) {
	bits, vals = make([]uint16, n), make([]float32, n)
	for i := range bits {
		r := f.Round(float64(float32(rng.NormFloat64() * scale)))
		bits[i], vals[i] = f.Encode(r), float32(r)
	}
	return bits, vals
}
