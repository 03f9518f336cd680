//go:build !amd64 || purego

package main

// fmaKernel: no register-blocked FMA loop here; the FMA rate is not
// measured.
func fmaKernel() (run func(m, c float32, rounds int) []float32, name string, flopPerRound int) {
	return nil, "", 0
}

// sumKernel: the streaming sum in Go, eight accumulators.
func sumKernel() func(p []float32) float32 {
	return func(p []float32) float32 {
		var s [8]float32
		for i := 0; i+8 <= len(p); i += 8 {
			for k := range s {
				s[k] += p[i+k]
			}
		}
		t := float32(0)
		for _, v := range s {
			t += v
		}
		return t
	}
}
