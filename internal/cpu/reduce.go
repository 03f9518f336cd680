package cpu

import (
	"math"
	"runtime"
	"unsafe"
)

// AbsMax returns max |m[i,j]|, or a non-finite value (NaN or +Inf) when m
// holds NaN or ±Inf: one read pass, split among goroutines. The magnitudes
// are compared as bit patterns with the sign cleared, whose order is that
// of the numbers, +Inf above every finite one and NaN above +Inf.
func AbsMax(m Mat) float32 {
	if m.Type.half() {
		return absMaxHalf(m.Bits, m.Type)
	}
	d := m.F32
	p := max(1, min(runtime.GOMAXPROCS(0), len(d)/(1<<15)))
	parts := make([]uint32, p)
	Parallel(p, len(d), func(glo, ghi int) {
		for g := glo; g < ghi; g++ {
			parts[g] = maxMagF32(d[g*len(d)/p : (g+1)*len(d)/p])
		}
	})
	var mx uint32
	for _, v := range parts {
		mx = max(mx, v)
	}
	return math.Float32frombits(mx)
}

// absMaxHalf is AbsMax for the patterns of an F16 or BF16 matrix: the
// patterns with the sign cleared are ordered as the magnitudes they encode
// (+Inf above every finite one, NaN above +Inf), so the largest, widened,
// is the largest magnitude, or NaN or +Inf when the matrix holds one.
func absMaxHalf(bits []uint16, dt Type) float32 {
	p := max(1, min(runtime.GOMAXPROCS(0), len(bits)/(1<<16)))
	parts := make([]uint16, p)
	Parallel(p, len(bits), func(glo, ghi int) {
		for g := glo; g < ghi; g++ {
			parts[g] = maxMag(bits[g*len(bits)/p : (g+1)*len(bits)/p])
		}
	})
	var mx uint16
	for _, v := range parts {
		mx = max(mx, v)
	}
	return widen1(dt, mx)
}

// maxMag returns the largest of s[j] & 0x7fff: with AVX2 where the
// processor has it, in Go otherwise and for the last s mod 16.
// maxMagF32 returns the largest of the patterns of s with the sign
// cleared: the largest magnitude's, or NaN's or +Inf's when s holds one.
func maxMagF32(s []float32) uint32 {
	var mx uint32
	m := 0
	if halfAVX2 {
		m = len(s) &^ 7
		if m > 0 {
			mx = maxMag32((*uint32)(unsafe.Pointer(&s[0])), m)
		}
	}
	for _, v := range s[m:] {
		mx = max(mx, math.Float32bits(v)&0x7fffffff)
	}
	return mx
}

func maxMag(s []uint16) uint16 {
	var mx uint16
	m := 0
	if halfAVX2 {
		m = len(s) &^ 15
		if m > 0 {
			mx = maxMag16(&s[0], m)
		}
	}
	for _, v := range s[m:] {
		mx = max(mx, v&0x7fff)
	}
	return mx
}

// MaxRowSum returns max_i Σⱼ |m[i,j]| for m (rows×cols), summed in
// float64: NaN as soon as a row's sum is NaN, +Inf when m holds ±Inf.
func MaxRowSum(m []float32, rows, cols int) float64 {
	var mx float64
	for i := range rows {
		var s float64
		for _, v := range m[i*cols : (i+1)*cols] {
			s += math.Abs(float64(v))
		}
		if s != s { // NaN stays NaN; +Inf compares above every finite sum
			return s
		}
		mx = max(mx, s)
	}
	return mx
}

// MSE returns Σ (y − t)², accumulated in float64, and writes
// dy = scale·(y − t) unless dy is nil.
func MSE(dy, y, t []float32, scale float32) float64 {
	p := max(1, min(runtime.GOMAXPROCS(0), len(y)/(1<<15)))
	parts := make([]float64, p)
	Parallel(p, 4*len(y), func(glo, ghi int) {
		for g := glo; g < ghi; g++ {
			lo, hi := g*len(y)/p, (g+1)*len(y)/p
			var sum float64
			for i := lo; i < hi; i++ {
				d := y[i] - t[i]
				sum += float64(d) * float64(d)
				if dy != nil {
					dy[i] = scale * d
				}
			}
			parts[g] = sum
		}
	})
	var sum float64
	for _, v := range parts {
		sum += v
	}
	return sum
}
