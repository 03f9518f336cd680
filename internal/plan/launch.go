package plan

import "math"

// A launch and the model of its time.

// Launch is one kernel launch and the measures the tests check.
type Launch struct {
	Kernel   Kernel
	Grid     [3]int  // x, y, z
	TileM    int     // rows of x per block (0: not a tiled kernel)
	N        int     // rows of x (for the padding of TileM)
	Split    int     // splits of the inner dimension (1: none)
	MaxSplit int     // the largest split the shape allows
	Bytes    float64 // DRAM bytes the launch moves, at least once each
	Flops    float64 // useful floating-point operations on the CUDA cores
	// TensorFlops is the useful floating-point operations on the tensor
	// cores (lora_forward_mma_*'s x·Wᵀ), at the device's Tensor rate.
	TensorFlops float64
	// TensorRate is the fraction of the device's Tensor rate the launch's
	// tiles reach (0: all of it); see MMATile.Rate.
	TensorRate float64
	// Reread is the DRAM bytes of W (and A) read again beyond Bytes: the
	// small NF4 kernels stream [W; A] once per SmallNMax rows of x.
	Reread float64
	// Dequant is the NF4 elements the launch dequantizes: each element of
	// W once per tile of rows of x (per block along the rows of x).
	Dequant float64
}

// Blocks is the size of the grid.
func (l Launch) Blocks() int { return l.Grid[0] * l.Grid[1] * l.Grid[2] }

// Waves is the number of rounds of blocks the launch takes on d.
func (l Launch) Waves(d Device) float64 {
	occ := d.Occupancy(l.Kernel)
	if occ == 0 {
		return 0
	}
	return float64(l.Blocks()) / float64(occ*d.SMs)
}

// InFlightPerSM is the bytes of W an SM of d keeps in flight: the blocks
// resident on it at once times what each keeps in flight.
func (l Launch) InFlightPerSM(d Device) float64 {
	resident := min(d.Occupancy(l.Kernel), (l.Blocks()+d.SMs-1)/d.SMs)
	return float64(resident * l.Kernel.InFlight)
}

// Padding is the fraction of the tile rows that lie past the last row of x
// (0 for kernels that are not tiled over x).
func (l Launch) Padding() float64 {
	if l.TileM == 0 || l.N == 0 {
		return 0
	}
	rows := (l.N + l.TileM - 1) / l.TileM * l.TileM
	return float64(rows-l.N) / float64(rows)
}

// BandwidthBound reports whether the launch is limited by memory bandwidth
// on d: its bytes take longer at full bandwidth than its FLOPs at full
// compute, and longer than 2 µs (below that, launch latency dominates and
// the wave count does not matter).
func (l Launch) BandwidthBound(d Device) bool {
	t := l.Bytes / d.Bandwidth
	return t > l.Flops/d.FLOPs+tensorTime(l.TensorFlops, d) && t > 2e-6
}

// tensorTime is flops on the tensor cores of d at their full rate: +Inf
// where d has none.
func tensorTime(flops float64, d Device) float64 {
	if flops == 0 {
		return 0
	}
	if !(d.Tensor > 0) {
		return math.Inf(1)
	}
	return flops / d.Tensor
}

// LaunchOverhead is the modelled cost of one kernel launch on the stream.
const LaunchOverhead = 3e-6

// DequantFlops is the cost of dequantizing one NF4 element in the model, in
// FLOP-equivalents of the CUDA cores: about four instructions (shift, mask,
// table read from shared memory, multiply by the absmax), each one issue
// slot of an FMA, which counts 2 FLOP.
const DequantFlops = 8

// Time is the modelled time of l on d: the launch overhead plus the larger
// of its memory time and its compute time.
//   - memory: Bytes + Reread at the device's bandwidth, scaled down by the
//     fraction of the in-flight target the launch keeps per SM (Little's
//     law) when its kernel says what it keeps in flight;
//   - compute: the useful FLOPs grown by the tile rows wasted on padding,
//     plus DequantFlops per dequantized NF4 element, at the device's fp32
//     rate, and the tensor cores' FLOPs, grown likewise, at its Tensor
//     rate (times TensorRate) after them; both rates times the fraction of the slots the
//     launch keeps busy, waves / ⌈waves⌉, so that a partial last wave
//     costs a whole one.
func (l Launch) Time(d Device) float64 {
	bw := d.Bandwidth
	if l.Kernel.InFlight > 0 {
		bw *= min(1, l.InFlightPerSM(d)/d.InFlightTarget())
	}
	mem := (l.Bytes + l.Reread) / bw
	busy := 1.0
	if w := l.Waves(d); w > 0 {
		busy = w / math.Ceil(w)
	}
	pad := 1 - l.Padding()
	tensor := tensorTime(l.TensorFlops/pad, d)
	if l.TensorRate > 0 {
		tensor /= l.TensorRate
	}
	compute := ((l.Flops/pad+DequantFlops*l.Dequant)/d.FLOPs + tensor) / busy
	return LaunchOverhead + max(mem, compute)
}
