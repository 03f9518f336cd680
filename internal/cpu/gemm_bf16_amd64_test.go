//go:build amd64 && !purego

package cpu

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// BenchmarkBF16Product times y = x·Wᵀ on a 4096×4096 BF16 W with x of
// bfloat16 values by the bf16 product on AMX ("amx") and on VDPBF16PS
// ("dp"), where the processor has them, and by the path without them
// ("f32": the packed float32 product or the matrix-vector kernels), with
// the CPU time of the process per product (on a machine shared with
// other work it varies less than the wall time).
func BenchmarkBF16Product(b *testing.B) {
	const out, in = 4096, 4096
	rng := rand.New(rand.NewPCG(7, 8))
	h := newHalfW(rng, BF16, out, in, 0.02)
	w := Mat{Rows: out, Cols: in, Type: BF16, Bits: h.bits}
	dp, amx := useBF16DP, useAMX
	b.Cleanup(func() { useBF16DP, useAMX = dp, amx })
	for _, n := range []int{16, 64, 256} {
		x, _ := randBF16(rng, n*in, 1)
		y := make([]float32, n*out)
		for _, p := range []struct {
			name    string
			dp, amx bool
		}{{"amx", true, true}, {"dp", true, false}, {"f32", false, false}} {
			if p.dp && !dp || p.amx && !amx {
				continue
			}
			b.Run(fmt.Sprintf("n=%d/%s", n, p.name), func(b *testing.B) {
				useBF16DP, useAMX = p.dp, p.amx
				c0 := cpuSeconds()
				for b.Loop() {
					Product(y, x, w, n)
				}
				cpu := (cpuSeconds() - c0) / float64(b.N)
				useBF16DP, useAMX = dp, amx
				sec := b.Elapsed().Seconds() / float64(b.N)
				b.ReportMetric(2*float64(n*out*in)/sec/1e9, "GFLOP/s")
				b.ReportMetric(cpu*1e3, "cpu-ms/op")
			})
		}
	}
}
