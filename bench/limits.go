package main

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"sync"
	"time"

	"github.com/golora/lora/internal/perf"
)

// Limits are this machine's ceilings, measured in the same run as the
// rows judged against them: the float32 FMA rate of all cores (a
// register-blocked loop of independent FMAs, bench/limits_amd64.s) and the
// read bandwidth of one streaming pass over a buffer beyond the caches, on
// all cores. Zero where not measured.
type Limits struct {
	FLOPs     float64 `json:"fma_flops,omitempty"` // float32 operations per second
	FMA       string  `json:"fma_kernel,omitempty"`
	ReadBW    float64 `json:"read_bytes_per_s,omitempty"`
	ReadBytes int     `json:"read_pass_bytes,omitempty"`
	Threads   int     `json:"threads,omitempty"`
}

// limitBytes is the buffer the read bandwidth streams: 256 MiB, or twice
// the last-level cache where that is larger.
func limitBytes() int { return max(256<<20, 2*perf.LLCBytes()) }

// measureLimits measures both limits on GOMAXPROCS threads: the FMA rate
// over runs of about fmaTime per thread, the bandwidth over passes across
// readBytes; each the best of three, after a first run that warms up.
func measureLimits(readBytes int, fmaTime time.Duration) Limits {
	threads := runtime.GOMAXPROCS(0)
	lim := Limits{Threads: threads}
	parallel := func(work func(t int)) float64 {
		var wg sync.WaitGroup
		start := time.Now()
		for t := range threads {
			wg.Add(1)
			go func() {
				defer wg.Done()
				runtime.LockOSThread()
				defer runtime.UnlockOSThread()
				work(t)
			}()
		}
		wg.Wait()
		return time.Since(start).Seconds()
	}
	if run, name, flop := fmaKernel(); run != nil {
		rounds := 1 << 14
		for {
			t0 := time.Now()
			run(1, 0, rounds)
			if d := time.Since(t0); d > fmaTime/8 || rounds > 1<<40 {
				rounds = max(1, int(float64(rounds)*fmaTime.Seconds()/d.Seconds()))
				break
			}
			rounds *= 4
		}
		for i := range 4 {
			t := parallel(func(int) { run(1, 0, rounds) })
			if i > 0 {
				lim.FLOPs = max(lim.FLOPs, float64(threads)*float64(rounds)*float64(flop)/t)
			}
		}
		lim.FMA = name
	}
	if sum := sumKernel(); sum != nil {
		chunk := max(64, readBytes/4/threads/64*64)
		buf := make([]float32, chunk*threads)
		for i := range buf {
			buf[i] = 1
		}
		sums := make([]float32, threads)
		for i := range 4 {
			t := parallel(func(k int) { sums[k] = sum(buf[k*chunk : (k+1)*chunk]) })
			if i > 0 {
				lim.ReadBW = max(lim.ReadBW, 4*float64(len(buf))/t)
			}
		}
		lim.ReadBytes = 4 * len(buf)
		buf = nil
		debug.FreeOSMemory()
	}
	return lim
}

// describe adds the limits to the machine's description.
func (lim Limits) describe(m map[string]string) {
	if lim.FLOPs > 0 {
		m["limit: fma"] = fmt.Sprintf("%.1f GFLOP/s float32 (%s, 12 independent accumulators, %d threads)", lim.FLOPs/1e9, lim.FMA, lim.Threads)
	}
	if lim.ReadBW > 0 {
		m["limit: read"] = fmt.Sprintf("%.1f GB/s (one streaming pass over %d MiB, %d threads)", lim.ReadBW/1e9, lim.ReadBytes>>20, lim.Threads)
	}
}

// limitN is the largest n whose Forward is judged by the read bandwidth
// on W's bytes; above it, by the FMA rate.
const limitN = 4

// share returns a Forward row's share of its limit: at n ≤ limitN, W's
// bytes over the fused time against the read bandwidth; above, its
// GFLOP/s against the FMA rate; 0 when that limit was not measured.
func (lim Limits) share(r ForwardRow) float64 {
	if r.N <= limitN {
		size := 4
		if rowDType(r.DType) == dtBF16 {
			size = 2
		}
		if lim.ReadBW > 0 && r.Fused.Median > 0 {
			return float64(size) * float64(r.In) * float64(r.Out) / r.Fused.Median / lim.ReadBW
		}
		return 0
	}
	if lim.FLOPs > 0 {
		return r.GFLOPs * 1e9 / lim.FLOPs
	}
	return 0
}
