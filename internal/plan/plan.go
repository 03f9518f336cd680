// Package plan chooses the launch geometry of the library's CUDA kernels:
// for each operation, one pure function turns the shape of the problem and
// the properties of the device (SM count, shared memory, threads and
// registers per SM, memory bandwidth) into the kernel variant, its tile
// sizes, the split of its inner dimension and its grid.
//
// The package is plain Go, with no cgo: the cuda and cudaemu builds of
// package lora call it to launch, and its tests run on any machine against a
// table of GPUs. The tile constants below mirror kernels/tiles.h; a test of
// package kernels (built with -tags cudaemu) checks that they agree.
//
// The rules, which the tests assert on every bench shape and device:
//   - a bandwidth-bound launch has at least 2 waves of blocks, unless its
//     inner dimension cannot be split further;
//   - a CUDA-core tiled launch wastes at most half of its tile rows on
//     padding;
//   - the 128×128 CUDA-core tiled path is taken only where it fills at
//     least one full wave;
//   - a bandwidth-bound kernel keeps at least the device's
//     latency × bandwidth ÷ SMs bytes of W in flight per SM;
//   - above SmallNMax rows, for an NF4 W and for x and W of one 16-bit
//     type on a device with tensor cores, the plan is the candidate of the
//     least modelled time (Launch.Time, Forward.Time, GradXPlan.Time):
//     memory at the bandwidth the launch's bytes in flight sustain, FLOPs
//     at the CUDA cores' or the tensor cores' rate, each launch's partial
//     last wave costing a whole wave. The tensor-core tiles are bound by
//     no wave or padding rule but this time.
package plan

import (
	"fmt"
	"math"
)

// Tile constants, mirrored from kernels/tiles.h.
const (
	WarpSize = 32

	ShrinkThreads = 256
	ShrinkRows    = 8
	ShrinkKs      = 8

	SmallNMax         = 16
	SmallThreads      = 128
	SmallRowsPerWarp  = 4
	SmallRowsPerBlock = 16
	SmallSplitAlign   = 128 // a split of in is a multiple of this many elements

	TileM       = 128
	TileN       = 128
	TileK       = 8
	TileThreads = 256

	MTileN       = 128 // rows of [W; A] per block of the small-M tiled kernels
	MTileK       = 32  // inner elements per step
	MTileThreads = 256

	ReduceThreads = 128 // lora_forward_reduce: one column of y per thread

	MergeTileOut = 32
	MergeTileIn  = 128
	MergeThreads = 256

	GradXSmallThreads = 256
	GradXSmallCols    = 128 // four columns per lane, float4
	GradXSmallRows    = 4   // float4 loads of W in flight per lane
	GradXSmallWarps   = 8

	FiniteThreads   = 256
	FinitePerThread = 16
	FiniteMaxBlocks = 1024

	BiasThreads = 256
	BiasBlocks  = 1024

	ConvertThreads   = 256
	ConvertMaxBlocks = 4096

	AxpyThreads   = 256
	AxpyMaxBlocks = 4096
)

// MaxSplit bounds the split of an inner dimension: the partial sums of every
// split are written to a workspace and summed by a second kernel.
const MaxSplit = 32

// Device holds the properties of a GPU that the planner uses.
type Device struct {
	Name         string
	SMs          int     // streaming multiprocessors
	SharedPerSM  int     // bytes of shared memory the blocks of one SM may use
	ThreadsPerSM int     // resident threads per SM
	RegsPerSM    int     // 32-bit registers per SM
	BlocksPerSM  int     // resident blocks per SM
	Bandwidth    float64 // DRAM bytes per second
	FLOPs        float64 // fp32 FLOP per second, CUDA cores
	Latency      float64 // seconds from a load's issue to its data, loaded memory system
	Arch         int     // compute capability, major·10 + minor (80: sm_80); 0 unknown
	// Tensor is the dense 16-bit (bf16, fp16) rate of the tensor cores
	// with fp32 accumulation, FLOP per second: what lora_forward_mma_*
	// runs at, on sm_80 and newer. 0: unknown, and no tensor-core plan.
	Tensor float64
}

// The devices of the tests, and the one the emulator reports. The tensor
// rates are the vendor's datasheet figures for dense bf16/fp16 (the
// datasheets print twice these, "with sparsity"): V100 SXM2 125 TFLOP/s
// (Volta's fp16 tensor cores, which the mma kernels, sm_80 and newer, do
// not use); A100 SXM 312; H100 SXM 989 (1,979 with sparsity); H200 SXM 989
// (1,979 with sparsity); H100 PCIe 756 (1,513 with sparsity); L4 121 (242
// with sparsity).
var (
	V100 = Device{"V100", 80, 96 << 10, 2048, 65536, 32, 900e9, 15.7e12, 0.7e-6, 70, 125e12}
	A100 = Device{"A100", 108, 164 << 10, 2048, 65536, 32, 2.04e12, 19.5e12, 0.7e-6, 80, 312e12}
	H100 = Device{"H100", 132, 228 << 10, 2048, 65536, 32, 3.35e12, 67e12, 0.7e-6, 90, 989e12}
	H200 = Device{"H200", 132, 228 << 10, 2048, 65536, 32, 4.8e12, 67e12, 0.7e-6, 90, 989e12}
	// H100 PCIe: 114 SMs at 1.755 GHz boost, HBM2e at 2.0 TB/s; 51 TFLOP/s
	// fp32, 756 dense bf16 (1,513 with sparsity).
	H100PCIe = Device{"H100 PCIe", 114, 228 << 10, 2048, 65536, 32, 2.0e12, 51e12, 0.7e-6, 90, 756e12}
	L4       = Device{"L4", 58, 100 << 10, 1536, 65536, 24, 300e9, 30e12, 0.7e-6, 89, 121e12}
)

// TensorPerFP32 is the ratio of the dense 16-bit tensor-core rate to the
// fp32 CUDA-core rate of an SM of compute capability arch, for a device
// whose driver gives the second alone (the datasheet figures above divided
// by SMs and boost clock): per SM and clock, 2048 FLOP against 128 on sm_80
// (A100: 312 TFLOP/s, 108 SMs, 1.41 GHz), 4096 against 256 on sm_90 (twice
// sm_80's tensor rate per SM and clock, twice its fp32 lanes), 1024 against
// 256 on sm_86 and sm_89 (A10: 125 TFLOP/s, 72 SMs, 1.70 GHz; L4: 121, 58
// SMs, 2.04 GHz). Another arch from sm_80 on gets the least of these, 4;
// below sm_80, 0 (no tensor-core kernel).
func TensorPerFP32(arch int) float64 {
	switch {
	case arch < 80:
		return 0
	case arch == 80, arch == 90:
		return 16
	}
	return 4
}

// Devices lists the devices of the tests.
var Devices = []Device{V100, A100, H100, H100PCIe, H200, L4}

// Valid reports whether every property of d is positive.
func (d Device) Valid() error {
	if d.SMs <= 0 || d.SharedPerSM <= 0 || d.ThreadsPerSM <= 0 || d.RegsPerSM <= 0 ||
		d.BlocksPerSM <= 0 || !(d.Bandwidth > 0) || !(d.FLOPs > 0) || !(d.Latency > 0) || !(d.Tensor >= 0) {
		return fmt.Errorf("plan: device %q has a property that is not positive: %+v", d.Name, d)
	}
	return nil
}

// InFlightTarget is the bytes each SM must keep in flight to cover memory
// latency at full bandwidth: latency × bandwidth ÷ SMs (Little's law).
func (d Device) InFlightTarget() float64 {
	return d.Latency * d.Bandwidth / float64(d.SMs)
}

// Elem is an element type of a matrix; the values are package lora's DType.
type Elem int

// The element types.
const (
	F32  Elem = iota // float32
	F16              // IEEE 754 binary16
	BF16             // bfloat16
	NF4              // 4-bit NormalFloat codes with a float32 absmax per block (W only)
)

// Size returns the bytes of one element: 4, 2, 2; for NF4, whose elements
// are half a byte plus a share of their block's absmax, 0 (see nf4Bytes).
func (e Elem) Size() int {
	switch e {
	case F16, BF16:
		return 2
	case NF4:
		return 0
	}
	return 4
}

// String returns "f32", "f16", "bf16" or "nf4".
func (e Elem) String() string {
	switch e {
	case F16:
		return "f16"
	case BF16:
		return "bf16"
	case NF4:
		return "nf4"
	}
	return "f32"
}

// DefaultNF4Block is the block size an NF4 W has when Types.Block is 0.
const DefaultNF4Block = 64

// nf4Bytes returns the bytes of count NF4 elements in blocks of block:
// half a byte each, and 4 bytes of absmax a block.
func nf4Bytes(count float64, block int) float64 {
	if block <= 0 {
		block = DefaultNF4Block
	}
	return count/2 + 4*math.Ceil(count/float64(block))
}

// half reports whether e is a 16-bit type.
func (e Elem) half() bool { return e == F16 || e == BF16 }

// suffix is the suffix of a kernel's name for operands of type e: "" for
// float32, "_f16", "_bf16", "_nf4".
func (e Elem) suffix() string {
	if e.half() || e == NF4 {
		return "_" + e.String()
	}
	return ""
}

// Types are the element types of a forward's operands: W, x and y (A and B
// are always float32), and the block size of an NF4 W (0: DefaultNF4Block),
// which counts in its bytes.
type Types struct {
	W, X, Y Elem
	Block   int
}

// Kernel is what a kernel asks of an SM: threads and registers per block
// (registers from ptxas, sm_90), static shared memory per block, and the
// bytes of its streamed operand (W) that one block keeps in flight.
type Kernel struct {
	Name     string
	Threads  int
	Regs     int // per thread
	Shared   int // bytes per block
	InFlight int // bytes of W per block in flight
}

// ReservedShared is the shared memory the driver reserves for each block
// on sm_80 and newer, beside the block's own.
const ReservedShared = 1024

// Regs returns the registers per thread of k on d: those ptxas gave k's
// SASS for d's architecture (kernelRegs), or k.Regs (sm_90's) for an
// architecture the fatbin has no SASS for.
func (d Device) Regs(k Kernel) int {
	if r, ok := kernelRegs[k.Name][d.Arch]; ok && k.Regs > 0 {
		return r
	}
	return k.Regs
}

// Occupancy returns how many blocks of k an SM of d holds at once: bound by
// its threads, by its shared memory (plus ReservedShared on sm_80 and
// newer) and by its registers on d (Regs).
func (d Device) Occupancy(k Kernel) int {
	b := min(d.BlocksPerSM, d.ThreadsPerSM/k.Threads)
	shared := k.Shared
	if d.Arch >= 80 {
		shared += ReservedShared
	}
	if shared > 0 {
		b = min(b, d.SharedPerSM/shared)
	}
	if regs := d.Regs(k); regs > 0 {
		// registers are allocated per warp in units of 256
		perWarp := (regs*WarpSize + 255) / 256 * 256
		warps := (k.Threads + WarpSize - 1) / WarpSize
		b = min(b, d.RegsPerSM/(perWarp*warps))
	}
	return max(b, 0)
}

// The kernels and their resources. Registers: nvcc 11.8, -Xptxas -v, sm_90.
var (
	KShrink = Kernel{"lora_shrink", ShrinkThreads, 80, 8448, 0}
	// lora_forward_small: 4 warps, each lane U float4 loads of each of its 4
	// rows in flight; U = 2 for every n (see SmallUnroll).
	KSmall = Kernel{"lora_forward_small", SmallThreads, 253, 33792, 0}
	KTiled = Kernel{"lora_forward_tiled", TileThreads, 128, 16896, TileN * TileK * 4}
	// lora_forward_m16/m32: two K-steps of V in flight per block; m64: one.
	KM16   = Kernel{"lora_forward_m16", MTileThreads, 128, mtileShared(16), 2 * MTileN * MTileK * 4}
	KM32   = Kernel{"lora_forward_m32", MTileThreads, 127, mtileShared(32), 2 * MTileN * MTileK * 4}
	KM64   = Kernel{"lora_forward_m64", MTileThreads, 127, mtileShared(64), MTileN * MTileK * 4}
	KRed   = Kernel{"lora_forward_reduce", ReduceThreads, 32, ReduceThreads * 4, 0}
	KMerge = Kernel{"lora_merge", MergeThreads, 128, 20608, MergeTileOut * MergeTileIn * 4}
	KGradX = Kernel{"lora_grad_x_small", GradXSmallThreads, 128, 34816,
		GradXSmallWarps * WarpSize * GradXSmallRows * 16}
	KGradXTiled = Kernel{"lora_grad_x_tiled", TileThreads, 128, 16896, TileN * TileK * 4}
	// lora_forward_mma_bf16, lora_forward_mma_f16 (sm_80 and newer): 128×128
	// tiles of y on tensor cores, two 32-element K-steps of x and W in flight.
	KMMA = Kernel{"lora_forward_mma", MMAThreads, 128, 40960, 2 * MMATileN * MMATileK * 2}
	// lora_forward_mma_m64n128_*, _m64n64_*, _m32n64_*: the same kernel on
	// smaller tiles of y (MMATiles), for where a wave of 128×128 tiles does
	// not fill the GPU: two K-steps of their BN rows of W in flight.
	KMMAm64n128 = Kernel{"lora_forward_mma_m64n128", MMAThreads, 76, 30720, 2 * 128 * MMATileK * 2}
	KMMAm64n64  = Kernel{"lora_forward_mma_m64n64", MMAThreads, 64, 20480, 2 * 64 * MMATileK * 2}
	KMMAm32n64  = Kernel{"lora_forward_mma_m32n64", MMAThreads, 48, 15360, 2 * 64 * MMATileK * 2}
	// lora_forward_small_nf4: lora_forward_small's geometry (and shared
	// memory, plus the 16 floats of the NF4 table); each lane keeps
	// NF4SmallUnroll 16-byte vectors of codes (32 elements each) of each of
	// its 4 rows in flight (the InFlight here: one; ForwardPlanOf sets it).
	KSmallNF4 = Kernel{"lora_forward_small_nf4", SmallThreads, NF4SmallRegs, 33792 + 64, SmallThreads * SmallRowsPerWarp * 16}
	// lora_grad_x_small_nf4: lora_grad_x_small's geometry; each lane keeps 2
	// bytes of codes of each of GradXSmallRows rows in flight.
	KGradXNF4 = Kernel{"lora_grad_x_small_nf4", GradXSmallThreads, NF4GradXRegs, 34816 + 64,
		GradXSmallWarps * WarpSize * GradXSmallRows * 2}
	// The tiled kernels' NF4 variants: lora_forward_tiled's and
	// lora_grad_x_tiled's geometry (plus the table in shared memory), W's
	// K-step one 32-bit word of 8 codes for each of the first TileN threads;
	// lora_forward_m*_nf4: two words a thread a K-step, two steps in flight
	// (m16, m32) or one (m64).
	KTiledNF4      = Kernel{"lora_forward_tiled_nf4", TileThreads, NF4TiledRegs, 16896 + 64, TileN * 4}
	KGradXTiledNF4 = Kernel{"lora_grad_x_tiled_nf4", TileThreads, NF4GradXTiledRegs, 16896 + 64, TileN * 4}
	KM16NF4        = Kernel{"lora_forward_m16_nf4", MTileThreads, NF4M16Regs, mtileShared(16) + 64, 2 * MTileN * MTileK / 2}
	KM32NF4        = Kernel{"lora_forward_m32_nf4", MTileThreads, NF4M32Regs, mtileShared(32) + 64, 2 * MTileN * MTileK / 2}
	KM64NF4        = Kernel{"lora_forward_m64_nf4", MTileThreads, NF4M64Regs, mtileShared(64) + 64, MTileN * MTileK / 2}
	// lora_convert_<src>_<dst>: a grid-stride loop that converts each
	// element; its registers are not counted (its threads bound its
	// occupancy here) and its bytes stream at full bandwidth.
	KConvert = Kernel{"lora_convert", ConvertThreads, 0, 0, 0}
)

// Registers of the NF4 kernels, from ptxas (nvcc 11.8, sm_90).
const (
	NF4SmallRegs      = 255
	NF4GradXRegs      = 126
	NF4TiledRegs      = 128
	NF4GradXTiledRegs = 128
	NF4M16Regs        = 127
	NF4M32Regs        = 121
	NF4M64Regs        = 110
)

// Tiles of lora_forward_mma_*, as its doc comment gives them.
const (
	MMATileM   = 128
	MMATileN   = 128
	MMATileK   = 32
	MMAThreads = 256
)

// MMATile is a tile shape of the tensor-core forward: BM rows of x by BN
// rows of W per block, and its kernel.
type MMATile struct {
	BM, BN int
	Kernel Kernel
}

// MMATiles are the tile shapes of the tensor-core forward, 128×128 first
// (the plan takes the first of the candidates that tie: the largest tile,
// the fewest loads per FMA).
var MMATiles = []MMATile{{MMATileM, MMATileN, KMMA}, {64, 128, KMMAm64n128}, {64, 64, KMMAm64n64}, {32, 64, KMMAm32n64}}

// SharedBytesPerFlop is the shared memory a tile of lora_forward_mma_*
// moves per tensor-core FLOP: each k16 step a warp (of the 2×4 grid, a
// BM/2 × BN/4 sub-tile, MI = BM/32 m16 tiles by NJ = BN/32 n8 tiles) reads
// MI + NJ/2 ldmatrix.x4 of 512 bytes for MI·NJ mma of 4096 FLOP; each
// K-step of 32 the block writes its (BM + BN)·32 16-bit elements for
// BM·BN·32·2 FLOP.
func (t MMATile) SharedBytesPerFlop() float64 {
	mi, nj := float64(t.BM/32), float64(t.BN/32)
	return (mi+nj/2)*512/(mi*nj*4096) + float64(t.BM+t.BN)/float64(t.BM*t.BN)
}

// Rate is the fraction of the device's Tensor rate the tile reaches: the
// 128×128 tile reaches it (the rate the model is calibrated with), a
// smaller one that rate scaled by the ratio of their shared-memory bytes
// per FLOP (the same loads from shared memory feed fewer mma): 0.73 for
// 64×128, 0.5 for 64×64, 0.36 for 32×64.
func (t MMATile) Rate() float64 {
	return min(1, MMATiles[0].SharedBytesPerFlop()/t.SharedBytesPerFlop())
}

// ofType returns the variant of the forward kernel k for a W (or, for
// lora_forward_reduce, a y; for lora_shrink, an x) of type e: its name with
// e's suffix, its registers from ptxas, and the bytes of W it keeps in
// flight, which halve with 16-bit elements where its loads keep their count
// (lora_forward_small keeps its count of 16-byte loads, so its bytes).
func ofType(k Kernel, e Elem) Kernel {
	if !e.half() {
		return k
	}
	k.Name += e.suffix()
	switch k.Name[:len(k.Name)-len(e.suffix())] {
	case KTiled.Name:
		k.InFlight /= 2
	case KM16.Name:
		k.Regs, k.InFlight = 127, k.InFlight/2
	case KM32.Name:
		k.Regs, k.InFlight = 121, k.InFlight/2
	case KM64.Name:
		k.Regs, k.InFlight = 115, k.InFlight/2
	case KGradXM16.Name:
		k.Regs, k.InFlight = 96, k.InFlight/2
	case KGradXM32.Name:
		k.Regs, k.InFlight = 99, k.InFlight/2
	case KGradXM64.Name:
		k.Regs, k.InFlight = 101, k.InFlight/2
	case KShrink.Name:
		k.Regs = 64
	case KGradX.Name:
		// lora_grad_x_small_*: 8 bytes of W a lane a row where it read 16
		k.Shared, k.InFlight = 36864, k.InFlight/2
	case KGradXTiled.Name:
		// lora_grad_x_tiled_*: 128 loads of 16 bytes a K-step where it
		// made 256
		k.InFlight /= 2
	}
	return k
}

// mtileShared is the static shared memory of lora_forward_m<bm>: one K-major
// tile of x, each row padded by 1 float (a warp's transposed stores hit 32
// banks), and one of [W; A], each row padded by 4 (16-byte rows).
func mtileShared(bm int) int { return MTileK * (bm + 1 + MTileN + 4) * 4 }

// SmallUnroll is the number of 16-byte loads of each W row a lane of
// lora_forward_small issues before using any, for nb rows of float32 x (nb
// is 1, 2, 4, 8 or 16; with a 16-bit x, 1 at nb = 16). It must match
// LORA_SMALL_U in forward_small.cu.
func SmallUnroll(nb int) int {
	switch {
	case nb <= 2:
		return 4
	default:
		return 2
	}
}

// NF4SmallUnroll is the number of 16-byte vectors of codes of each W row a
// lane of lora_forward_small_nf4 issues before using any, for nb rows of x
// (1, 2, 4, 8 or 16). It must match LORA_NF4_U in nf4.cu.
func NF4SmallUnroll(nb int) int {
	if nb <= 4 {
		return 2
	}
	return 1
}

// smallNB is the row count lora_forward_small compiles for n rows of x.
func smallNB(n int) int {
	nb := 1
	for nb < n {
		nb *= 2
	}
	return nb
}

// Forward is the plan of y = x·Wᵀ + s·(x·Aᵀ)·Bᵀ.
//
// Fused (n small or mid-sized, or the 128×128 tiles would not fill the
// GPU): the main kernel computes P = x·[W; A]ᵀ, n × (out + r), with the
// inner dimension split in Main.Split parts whose partial products go to a
// workspace; lora_forward_reduce then writes y = ΣP[:, :out] +
// s·(ΣP[:, out:])·Bᵀ, summing the splits in order (deterministic). With
// r = 0 and no split the main kernel writes y directly and Reduce is nil.
//
// Not fused (large n): lora_shrink writes T = s·x·Aᵀ (Shrink, nil when
// r = 0) and lora_forward_tiled y = x·Wᵀ + T·Bᵀ.
type Forward struct {
	Fused     bool
	MMA       bool // Main is lora_forward_mma_*: x in W's type, T from Shrink of x's type
	XNative   bool // Main (and Shrink) read x in its own type: MMA, or lora_forward_small_*_x*
	Shrink    *Launch
	Main      Launch
	Reduce    *Launch
	Workspace int // floats of workspace: the partial products, or T
	// WidenX and RoundY are the lora_convert launches the caller adds
	// around Launches (nil: none): a 16-bit x widened into float32 before,
	// where the plan does not read x as it is (XNative false), and the
	// float32 product rounded into a 16-bit y after, where the plan is not
	// fused. Time counts them.
	WidenX, RoundY *Launch
}

func ceilDiv(a, b int) int { return (a + b - 1) / b }

// ForwardPlan plans y = x·Wᵀ + s·(x·Aᵀ)·Bᵀ for x n×in, W out×in and rank r
// on d, every operand float32. n, in, out >= 1 and r >= 0.
func ForwardPlan(d Device, n, in, out, r int) Forward {
	return ForwardPlanOf(d, n, in, out, r, Types{})
}

// ForwardPlanOf plans the forward for operands of the types ty.
//
// W's type picks the variant of each kernel (lora_forward_small_bf16, ...),
// which reads W as it is stored, 16-byte loads widened in registers; its
// bytes, half those of float32 for a 16-bit W, set the waves and the bytes in
// flight that a bandwidth-bound launch needs. The CUDA-core kernels read x
// in float32 (the caller widens a 16-bit x first: WidenX) except
// lora_forward_small's variants for x in W's 16-bit type (XNative). y's
// type: the fused plans round y in lora_forward_reduce of y's type, which
// they launch for a 16-bit y even without rank or split; the others (Fused
// false) write float32, which the caller rounds into y (RoundY).
//
// The plan is the candidate of the least modelled time (Forward.Time, the
// first of those that tie) among ForwardCandidates:
//   - x and W of one 16-bit type on sm_80 and newer (d.Arch >= 80, with a
//     Tensor rate), n above SmallNMax: the fused m-tiles, the 128×128
//     CUDA-core tiles where the rules allow them, and the tensor cores
//     (lora_forward_mma_* on each of MMATiles, after a lora_shrink of x's
//     type; x read as it is), each with its wave quantisation, padding and
//     the conversions of x and y it needs;
//   - an NF4 W: see ForwardNF4Candidates. Every NF4 kernel dequantizes W
//     on the CUDA cores into float32 tiles; none runs on tensor cores;
//   - otherwise one plan by the rules: at n <= SmallNMax lora_forward_small,
//     above it the 128×128 tiles where they fill a wave with at most half
//     of their rows padding, and the fused m-tiles elsewhere.
func ForwardPlanOf(d Device, n, in, out, r int, ty Types) Forward {
	return bestForward(d, ForwardCandidates(d, n, in, out, r, ty))
}

// TensorCores reports whether a forward of operands of the types ty may
// run on d's tensor cores: sm_80 and newer with a known Tensor rate, x and
// W of one 16-bit type.
func TensorCores(d Device, ty Types) bool {
	return d.Arch >= 80 && d.Tensor > 0 && ty.W.half() && ty.X == ty.W
}

// ForwardCandidates lists the plans ForwardPlanOf chooses among (see
// there), each with its WidenX and RoundY: one plan where the rules
// decide, the small kernel alone at n <= SmallNMax.
func ForwardCandidates(d Device, n, in, out, r int, ty Types) []Forward {
	if ty.W == NF4 {
		return ForwardNF4Candidates(d, n, in, out, r, ty)
	}
	wBytes, ioBytes, flops := forwardSizes(n, in, out, r, ty)
	tiled, tiledOK := tiledForward(d, n, in, out, r, ty, wBytes, ioBytes, flops)
	var c []Forward
	switch {
	case n <= SmallNMax:
		c = []Forward{fusedForward(d, n, in, out, r, ty, true, wBytes, ioBytes, flops)}
	case TensorCores(d, ty):
		c = []Forward{fusedForward(d, n, in, out, r, ty, false, wBytes, ioBytes, flops)}
		if tiledOK {
			c = append(c, tiled)
		}
		for _, tile := range MMATiles {
			c = append(c, mmaForward(n, in, out, r, ty, tile, wBytes, ioBytes))
		}
	case tiledOK:
		c = []Forward{tiled}
	default:
		c = []Forward{fusedForward(d, n, in, out, r, ty, false, wBytes, ioBytes, flops)}
	}
	for i := range c {
		c[i] = converted(c[i], n, in, out, ty)
	}
	return c
}

// mmaForward is the plan on the tensor cores: lora_shrink of x's type
// writes T = s·x·Aᵀ (none at r = 0), then lora_forward_mma_* y = x·Wᵀ +
// T·Bᵀ on the tiles of tile, x·Wᵀ on the tensor cores and the rank term on
// the CUDA cores, y in float32.
func mmaForward(n, in, out, r int, ty Types, tile MMATile, wBytes, ioBytes float64) Forward {
	k := tile.Kernel
	k.Name += ty.W.suffix()
	f := Forward{MMA: true, XNative: true, Main: Launch{Kernel: k,
		Grid: [3]int{ceilDiv(n, tile.BM), ceilDiv(out, tile.BN), 1}, TileM: tile.BM, N: n, Split: 1, MaxSplit: 1,
		Bytes: wBytes + ioBytes, Flops: 2 * float64(n) * float64(out) * float64(r),
		TensorFlops: 2 * float64(n) * float64(out) * float64(in), TensorRate: tile.Rate()}}
	if r > 0 {
		f.Shrink = shrinkLaunch(n, in, r, ty.X)
		f.Workspace = n * r
	}
	return f
}

// shrinkLaunch is lora_shrink of x's type: T = s·x·Aᵀ, n×r.
func shrinkLaunch(n, in, r int, x Elem) *Launch {
	return &Launch{Kernel: ofType(KShrink, x), Grid: [3]int{ceilDiv(n, ShrinkRows), ceilDiv(r, ShrinkKs), 1},
		Split: 1, MaxSplit: 1, Bytes: float64(x.Size()*n*in + 4*r*in + 4*n*r), Flops: 2 * float64(n) * float64(r) * float64(in)}
}

// converted returns f with the conversions its caller launches: x widened
// into float32 where f reads float32 and x is 16-bit, the float32 product
// rounded into y where f is not fused and y is 16-bit.
func converted(f Forward, n, in, out int, ty Types) Forward {
	f.WidenX, f.RoundY = nil, nil
	conv := func(src, dst Elem, count int) *Launch {
		k := KConvert
		k.Name += "_" + src.String() + "_" + dst.String()
		return &Launch{Kernel: k, Grid: [3]int{ConvertBlocks(int64(count)), 1, 1}, Split: 1, MaxSplit: 1,
			Bytes: float64((src.Size() + dst.Size()) * count)}
	}
	if ty.X.half() && !f.XNative {
		f.WidenX = conv(ty.X, F32, n*in)
	}
	if ty.Y.half() && !f.Fused {
		f.RoundY = conv(F32, ty.Y, n*out)
	}
	return f
}

// tiledForward is the unfused plan on the 128×128 tiles, lora_shrink then
// lora_forward_tiled of W's type, and whether the rules allow it: n above
// SmallNMax, at most half of the tile rows padding, a full wave at least.
func tiledForward(d Device, n, in, out, r int, ty Types, wBytes, ioBytes, flops float64) (Forward, bool) {
	k := ofType(KTiled, ty.W)
	if ty.W == NF4 {
		k = KTiledNF4
	}
	tiled := Launch{Kernel: k, Grid: [3]int{ceilDiv(n, TileM), ceilDiv(out, TileN), 1},
		TileM: TileM, N: n, Split: 1, MaxSplit: 1, Bytes: wBytes + ioBytes, Flops: flops}
	if ty.W == NF4 {
		tiled.Dequant = float64(out) * float64(in) * float64(ceilDiv(n, TileM))
	}
	f := Forward{Main: tiled}
	if r > 0 {
		f.Shrink = shrinkLaunch(n, in, r, F32)
		f.Workspace = n * r
	}
	return f, n > SmallNMax && tiled.Padding() <= 0.5 && tiled.Waves(d) >= 1
}

// forwardSizes returns the bytes of [W; A], the bytes of x and y, and the
// useful FLOPs of a forward.
func forwardSizes(n, in, out, r int, ty Types) (wBytes, ioBytes, flops float64) {
	wBytes = float64(ty.W.Size())*float64(out)*float64(in) + 4*float64(r)*float64(in)
	if ty.W == NF4 {
		wBytes = nf4Bytes(float64(out)*float64(in), ty.Block) + 4*float64(r)*float64(in)
	}
	flops = 2 * float64(n) * float64(out+r) * float64(in)
	ioBytes = float64(ty.X.Size())*float64(n)*float64(in) + float64(ty.Y.Size())*float64(n)*float64(out)
	return wBytes, ioBytes, flops
}

// ForwardNF4Candidates lists the plans ForwardPlanOf chooses among for an
// NF4 W (ty.W == NF4): at n <= SmallNMax the fused lora_forward_small_nf4 alone (it reads
// W once and keeps the most of it in flight); above, that kernel (which
// reads [W; A] once per SmallNMax rows of x), the fused m-tiles
// (lora_forward_m*_nf4, [W; A] once from DRAM, shared by the M-tiles
// through L2) and, where the rules allow them, the 128×128 tiles.
func ForwardNF4Candidates(d Device, n, in, out, r int, ty Types) []Forward {
	wBytes, ioBytes, flops := forwardSizes(n, in, out, r, ty)
	c := []Forward{fusedForward(d, n, in, out, r, ty, true, wBytes, ioBytes, flops)}
	if n > SmallNMax {
		c = append(c, fusedForward(d, n, in, out, r, ty, false, wBytes, ioBytes, flops))
		if t, ok := tiledForward(d, n, in, out, r, ty, wBytes, ioBytes, flops); ok {
			c = append(c, t)
		}
	}
	for i := range c {
		c[i] = converted(c[i], n, in, out, ty)
	}
	return c
}

// bestForward returns the candidate of the least modelled time, the first
// of those that tie.
func bestForward(d Device, c []Forward) Forward {
	best := c[0]
	for _, f := range c[1:] {
		if f.Time(d) < best.Time(d) {
			best = f
		}
	}
	return best
}

// Time is the modelled time of f on d: the Time of each launch and of its
// conversions (WidenX, RoundY), plus the partial products a fused plan's
// main kernel writes to its workspace (lora_forward_reduce's Bytes count
// their reading).
func (f Forward) Time(d Device) float64 {
	var t float64
	for _, l := range f.Launches() {
		t += l.Time(d)
	}
	for _, l := range []*Launch{f.WidenX, f.RoundY} {
		if l != nil {
			t += l.Time(d)
		}
	}
	if f.Fused {
		t += 4 * float64(f.Workspace) / d.Bandwidth
	}
	return t
}

// fusedForward is the fused plan: lora_forward_small* (small, or any n for
// an NF4 W) or the m-tiles, then lora_forward_reduce where a rank, a split
// or a 16-bit y needs it.
func fusedForward(d Device, n, in, out, r int, ty Types, small bool, wBytes, ioBytes, flops float64) Forward {
	var main Launch
	var slots int
	var xNative bool
	if small && ty.W == NF4 {
		// Blocks of W's rows, then blocks of A's, as lora_forward_small;
		// 16 rows of x per block along z, each chunk streaming [W; A] again.
		main = Launch{Kernel: KSmallNF4, Grid: [3]int{ceilDiv(out, SmallRowsPerBlock) + ceilDiv(r, SmallRowsPerBlock), 1, ceilDiv(n, SmallNMax)}}
		main.Kernel.InFlight *= NF4SmallUnroll(smallNB(min(n, SmallNMax)))
		main.MaxSplit = max(1, min(MaxSplit, in/SmallSplitAlign))
		main.Reread = float64(ceilDiv(n, SmallNMax)-1) * wBytes
		main.Dequant = float64(out) * float64(in) * float64(ceilDiv(n, SmallNMax))
	} else if small {
		// Blocks of W's rows, then blocks of A's: a warp's rows are of one type.
		// x in W's 16-bit type is read as it is (lora_forward_small_bf16_xbf16)
		// up to 8 rows; at 16 that kernel has the registers for one load of
		// each row of W in flight (half the bytes the float32-x kernel keeps,
		// below the in-flight target), so x is widened first.
		main = Launch{Kernel: ofType(KSmall, ty.W), Grid: [3]int{ceilDiv(out, SmallRowsPerBlock) + ceilDiv(r, SmallRowsPerBlock), 1, 1}}
		xNative = ty.X.half() && ty.X == ty.W && smallNB(n) < 16
		if xNative {
			main.Kernel.Name += "_x" + ty.X.String()
			main.Kernel.Regs = 254
		}
		u := SmallUnroll(smallNB(n))
		main.Kernel.InFlight = SmallThreads * u * SmallRowsPerWarp * 16
		main.MaxSplit = max(1, min(MaxSplit, in/SmallSplitAlign))
	} else {
		// The fewest padded rows among the tile heights that need at most 4
		// M-tiles (each M-tile streams V again, from L2); ties and beyond 4
		// tiles, the tallest, whose blocks do the most FMAs per load.
		bm := MTileHeight(n)
		k := map[int]Kernel{16: KM16, 32: KM32, 64: KM64}[bm]
		k = ofType(k, ty.W)
		if ty.W == NF4 {
			k = map[int]Kernel{16: KM16NF4, 32: KM32NF4, 64: KM64NF4}[bm]
		}
		// Tiles of W's rows, then tiles of A's.
		main = Launch{Kernel: k, Grid: [3]int{ceilDiv(n, bm), ceilDiv(out, MTileN) + ceilDiv(r, MTileN), 1}, TileM: bm, N: n}
		// at least 4 K-steps per split
		main.MaxSplit = max(1, min(MaxSplit, ceilDiv(in, MTileK)/4))
		if ty.W == NF4 {
			main.Dequant = float64(out) * float64(in) * float64(ceilDiv(n, bm))
		}
	}
	main.N = n
	main.Bytes = wBytes + ioBytes
	main.Flops = flops
	slots = d.Occupancy(main.Kernel) * d.SMs
	want := slots // one full wave at least
	if main.BandwidthBound(d) {
		// two waves, and enough blocks on every SM to cover latency
		resident := min(d.Occupancy(main.Kernel), ceilDiv(int(d.InFlightTarget()), main.Kernel.InFlight))
		want = max(2*slots, resident*d.SMs)
		// Bandwidth-bound, the partial products' traffic counts: at most 10 %
		// of W's. Compute-bound, it is small beside the FLOPs of a split.
		main.MaxSplit = min(main.MaxSplit, workspaceSplits(n, in))
	}
	base := main.Blocks()
	split := min(main.MaxSplit, max(1, ceilDiv(want, base)))
	if !main.BandwidthBound(d) {
		// Compute-bound: the split that minimizes the modelled time, the
		// FLOPs at the fraction of the slots the blocks keep busy (a
		// partial last wave costs a whole one, as in Launch.Time) plus the
		// partial products written and read back.
		best := math.Inf(1)
		for s := 1; s <= split; s++ {
			w := float64(s*base) / float64(slots)
			busy := w / math.Ceil(w)
			ws := 0.0
			if s > 1 || r > 0 {
				ws = 8 * float64(s) * float64(n) * float64(out+r)
			}
			if t := flops/(d.FLOPs*busy) + ws/d.Bandwidth; t < best {
				best, main.Split = t, s
			}
		}
		split = main.Split
	}
	main.Split = split
	if small {
		main.Grid[1] = split
	} else {
		main.Grid[2] = split
	}
	f := Forward{Fused: true, Main: main, XNative: xNative}
	if r > 0 || split > 1 || ty.Y.half() {
		f.Workspace = split * n * (out + r)
		f.Reduce = &Launch{Kernel: ofType(KRed, ty.Y), Grid: [3]int{ceilDiv(out, ReduceThreads), min(n, 65535), 1}, Split: 1, MaxSplit: 1,
			Bytes: 4*float64(f.Workspace+out*r) + float64(ty.Y.Size()*n*out), Flops: 2 * float64(n) * float64(out) * float64(r+split)}
	}
	return f
}

// MTileHeight is the rows of x per block of the m-tile kernels for n rows:
// the fewest padded rows among the heights 64, 32 and 16 whose tiles number
// at most 4 (each M-tile streams V again, from L2); ties, and beyond 4
// tiles, the tallest, whose blocks do the most FMAs per load.
func MTileHeight(n int) int {
	bm := 64
	for _, c := range []int{32, 16} {
		if ceilDiv(n, c) <= 4 && ceilDiv(n, c)*c < ceilDiv(n, bm)*bm {
			bm = c
		}
	}
	return bm
}

// workspaceSplits is the largest split of the inner dimension whose partial
// products, written and read back (2·split·n·(out + r) floats), cost at most
// 10 % of the bytes of W ((out + r)·in floats): split <= 0.05·in/n. Fewer
// blocks than SMs cost more: at n = 32, in = out = 4096 a 5 % budget leaves
// 99 blocks of lora_forward_m32 for 132 SMs.
func workspaceSplits(n, in int) int { return max(1, in/(20*n)) }

// Launches lists the launches of f in order.
func (f Forward) Launches() []Launch {
	var ls []Launch
	if f.Shrink != nil {
		ls = append(ls, *f.Shrink)
	}
	ls = append(ls, f.Main)
	if f.Reduce != nil {
		ls = append(ls, *f.Reduce)
	}
	return ls
}

// Merge plans W += c·B·A for W out×in: one block per 32×128 tile of W, each
// thread's 4 rows of W loaded before the rank is staged.
func Merge(d Device, out, in, r int) Launch {
	return Launch{Kernel: KMerge, Grid: [3]int{ceilDiv(in, MergeTileIn), ceilDiv(out, MergeTileOut), 1},
		Split: 1, MaxSplit: 1, Bytes: 8 * float64(out) * float64(in),
		Flops: 2 * float64(out) * float64(in) * float64(r)}
}

// Stream plans a grid-stride elementwise kernel over count elements, threads
// per block, per elements per thread, capped at maxBlocks: the grid covers
// the elements once, or, capped, at least 2 waves.
func Stream(count int64, threads, per, maxBlocks int) int {
	b := (count + int64(threads*per) - 1) / int64(threads*per)
	return int(min(max(b, 1), int64(maxBlocks)))
}

// AbsMaxBlocks is the grid of lora_absmax over count elements.
func AbsMaxBlocks(count int64) int {
	return Stream(count, FiniteThreads, FinitePerThread, FiniteMaxBlocks)
}

// ConvertBlocks is the grid of lora_convert over count elements, eight per
// thread.
func ConvertBlocks(count int64) int { return Stream(count, ConvertThreads, 8, ConvertMaxBlocks) }

// AxpyBlocks is the grid of lora_axpy over count elements.
func AxpyBlocks(count int64) int { return Stream(count, AxpyThreads, 1, AxpyMaxBlocks) }

// BiasGrid is the grid (gx, gy) of lora_add_bias over a rows×cols y: columns
// over x (float4 when cols % 4 == 0), rows over y, about BiasBlocks blocks.
func BiasGrid(rows, cols int) (gx, gy int) {
	units := cols
	if units%4 == 0 {
		units /= 4
	}
	gx = min(ceilDiv(units, BiasThreads), BiasBlocks)
	gy = min(rows, max(BiasBlocks/gx, 1), 65535)
	return gx, gy
}
