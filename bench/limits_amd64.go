//go:build amd64 && !purego

package main

import xcpu "golang.org/x/sys/cpu"

//go:noescape
func fmaZMM(acc *[12][16]float32, m, c float32, n int)

//go:noescape
func fmaYMM(acc *[12][8]float32, m, c float32, n int)

//go:noescape
func sumYMM(p *float32, n int) float32

// The widest FMA this processor has: AVX-512 (16 lanes), AVX2 with FMA
// (8), or none, when the FMA rate is not measured.
var (
	hasZMM = xcpu.X86.HasAVX512F
	hasYMM = xcpu.X86.HasAVX2 && xcpu.X86.HasFMA
)

// fmaKernel returns the register-blocked FMA loop the machine's widest
// vectors run, its name and the float32 operations of one of its rounds
// (12 FMAs of lanes lanes, 2 operations each), or nil where there is none.
func fmaKernel() (run func(m, c float32, rounds int) []float32, name string, flopPerRound int) {
	switch {
	case hasZMM:
		return func(m, c float32, rounds int) []float32 {
			var acc [12][16]float32
			fmaZMM(&acc, m, c, rounds)
			var out []float32
			for _, a := range acc {
				out = append(out, a[:]...)
			}
			return out
		}, "AVX-512 FMA", 12 * 16 * 2
	case hasYMM:
		return func(m, c float32, rounds int) []float32 {
			var acc [12][8]float32
			fmaYMM(&acc, m, c, rounds)
			var out []float32
			for _, a := range acc {
				out = append(out, a[:]...)
			}
			return out
		}, "AVX2 FMA", 12 * 8 * 2
	}
	return nil, "", 0
}

// sumKernel returns the streaming sum of p (len(p) a multiple of 64), or
// nil where it needs AVX2.
func sumKernel() func(p []float32) float32 {
	if !xcpu.X86.HasAVX2 {
		return nil
	}
	return func(p []float32) float32 {
		if len(p) == 0 {
			return 0
		}
		return sumYMM(&p[0], len(p))
	}
}
