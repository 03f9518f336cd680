package plan

import "math"

// The plans of Backward's dx = dy·W + U·A.

// The m-tile kernels of dx (lora_grad_x_m16, _m32, _m64 and their _f16 and
// _bf16 forms): lora_forward_m*'s tiles, threads and shared memory with W
// not transposed, the rank term folded in as A's rows below W's. Two K-steps
// of a float32 W in flight per block (m16, m32), one (m64); a 16-bit W
// half the bytes (ofType). Registers: nvcc 11.8, sm_90.
var (
	KGradXM16 = Kernel{"lora_grad_x_m16", MTileThreads, 80, mtileShared(16), 2 * MTileN * MTileK * 4}
	KGradXM32 = Kernel{"lora_grad_x_m32", MTileThreads, 83, mtileShared(32), 2 * MTileN * MTileK * 4}
	KGradXM64 = Kernel{"lora_grad_x_m64", MTileThreads, 92, mtileShared(64), MTileN * MTileK * 4}
	// lora_grad_x_m*_nf4: W's K-step as runs of eight codes, half a byte an
	// element, the table beside the tiles.
	KGradXM16NF4 = Kernel{"lora_grad_x_m16_nf4", MTileThreads, 80, mtileShared(16) + 64, 2 * MTileN * MTileK / 2}
	KGradXM32NF4 = Kernel{"lora_grad_x_m32_nf4", MTileThreads, 101, mtileShared(32) + 64, 2 * MTileN * MTileK / 2}
	KGradXM64NF4 = Kernel{"lora_grad_x_m64_nf4", MTileThreads, 106, mtileShared(64) + 64, MTileN * MTileK / 2}
)

// GradX plans dx = dy·W + U·A (n×in) for a float32 W out×in: GradXOf's
// plan (see there) as its launches and the floats of its workspace.
func GradX(d Device, n, in, out, r int) (main Launch, reduce *Launch, workspace int) {
	g := GradXOf(d, n, in, out, r, Types{W: F32})
	return g.Main, g.Reduce, g.Workspace
}

// GradXOf plans dx = dy·W + U·A (n×in) for a W out×in of type ty.W (ty.Block
// its NF4 block size; dy, U, A and dx are float32): the candidate of the
// least modelled time (GradXPlan.Time, the first of those that tie) among
// GradXCandidates. For an NF4 W, GradXNF4's plan.
func GradXOf(d Device, n, in, out, r int, ty Types) GradXPlan {
	return bestGradX(d, GradXCandidates(d, n, in, out, r, ty))
}

// bestGradX returns the candidate of the least modelled time, the first of
// those that tie.
func bestGradX(d Device, c []GradXPlan) GradXPlan {
	best := c[0]
	for _, g := range c[1:] {
		if g.Time(d) < best.Time(d) {
			best = g
		}
	}
	return best
}

// GradXCandidates lists the plans GradXOf chooses among. For n <=
// SmallNMax, lora_grad_x_small alone: 128 columns of dx per block (four per
// lane), the out + r rows of [W; A] split over the grid's y in Split parts
// whose partial sums go to a workspace, reduced in order by
// lora_forward_reduce (r = 0: no rank term). Above, where the rules allow
// them (at most half of the tile rows padding, a full wave at least), the
// 128×128 lora_grad_x_tiled, first, so that it wins a tie: its 8×8 register
// tiles do twice the FMAs per load from shared memory of the m-tiles' 4×8,
// which the model does not see; then the m-tiles (lora_grad_x_m*: the
// Forward's m-tile height and split of the inner dimension, here out + r,
// the partial products of a split summed by lora_forward_reduce; unsplit,
// dx written directly). Kernel names carry W's type (_f16, _bf16).
// An NF4 W: GradXNF4Candidates.
func GradXCandidates(d Device, n, in, out, r int, ty Types) []GradXPlan {
	if ty.W == NF4 {
		return GradXNF4Candidates(d, n, in, out, r, ty.Block)
	}
	wBytes := float64(ty.W.Size())*float64(out)*float64(in) + 4*float64(r)*float64(in)
	flops := 2 * float64(n) * float64(out+r) * float64(in)
	ioBytes := 4 * float64(n) * float64(in+out)
	if n <= SmallNMax {
		main := Launch{Kernel: ofType(KGradX, ty.W), Grid: [3]int{ceilDiv(in, GradXSmallCols), 1, 1}, N: n,
			Bytes: wBytes + ioBytes, Flops: flops}
		// each split at least 8 rows per warp
		main.MaxSplit = max(1, min(MaxSplit, (out+r)/(8*GradXSmallWarps)))
		want := d.Occupancy(main.Kernel) * d.SMs
		if main.BandwidthBound(d) {
			want *= 2
		}
		main.Split = min(main.MaxSplit, max(1, ceilDiv(want, main.Blocks())))
		main.Grid[1] = main.Split
		return []GradXPlan{gradXReduced(main, n, in)}
	}
	var c []GradXPlan
	tiled := Launch{Kernel: ofType(KGradXTiled, ty.W), Grid: [3]int{ceilDiv(n, TileM), ceilDiv(in, TileN), 1},
		TileM: TileM, N: n, Split: 1, MaxSplit: 1, Bytes: wBytes + ioBytes, Flops: flops}
	if tiled.Padding() <= 0.5 && tiled.Waves(d) >= 1 {
		c = append(c, GradXPlan{Main: tiled})
	}
	return append(c, gradXMTile(d, n, in, out, r, ty.W, wBytes+ioBytes, flops))
}

// gradXReduced is the plan of the main launch of dx, main, with the
// lora_forward_reduce (r = 0) and the workspace its split needs.
func gradXReduced(main Launch, n, in int) GradXPlan {
	g := GradXPlan{Main: main}
	if main.Split > 1 {
		g.Workspace = main.Split * n * in
		g.Reduce = &Launch{Kernel: KRed, Grid: [3]int{ceilDiv(in, ReduceThreads), min(n, 65535), 1}, Split: 1, MaxSplit: 1,
			Bytes: 4 * float64(g.Workspace+n*in), Flops: float64(g.Workspace)}
	}
	return g
}

// gradXMTile is the plan of dx on the m-tiles: MTileHeight(n) rows of dy
// per block, 128 columns of dx, the out + r inner elements in K-steps of
// MTileK split as the Forward's m-tiles split theirs: bandwidth-bound, two
// waves and the in-flight target (at most the splits whose partial
// products cost 10 % of W's bytes, at least 4 K-steps a split);
// compute-bound, the split of the least modelled time.
func gradXMTile(d Device, n, in, out, r int, w Elem, bytes, flops float64) GradXPlan {
	bm := MTileHeight(n)
	k := ofType(map[int]Kernel{16: KGradXM16, 32: KGradXM32, 64: KGradXM64}[bm], w)
	main := Launch{Kernel: k, Grid: [3]int{ceilDiv(n, bm), ceilDiv(in, MTileN), 1}, TileM: bm, N: n,
		Bytes: bytes, Flops: flops}
	if w == NF4 {
		main.Kernel = map[int]Kernel{16: KGradXM16NF4, 32: KGradXM32NF4, 64: KGradXM64NF4}[bm]
		main.Dequant = float64(out) * float64(in) * float64(ceilDiv(n, bm))
	}
	steps := ceilDiv(out, MTileK) + ceilDiv(r, MTileK)
	main.MaxSplit = max(1, min(MaxSplit, steps/4))
	k = main.Kernel
	slots := d.Occupancy(k) * d.SMs
	want := slots
	bound := main.BandwidthBound(d)
	if bound {
		resident := min(d.Occupancy(k), ceilDiv(int(d.InFlightTarget()), k.InFlight))
		want = max(2*slots, resident*d.SMs)
		main.MaxSplit = min(main.MaxSplit, workspaceSplits(n, out+r))
	}
	base := main.Blocks()
	main.Split = min(main.MaxSplit, max(1, ceilDiv(want, base)))
	if !bound {
		// the FLOPs at the fraction of the slots the blocks keep busy, plus
		// the partial products written and read back
		best, split := math.Inf(1), main.Split
		for s := 1; s <= split; s++ {
			w := float64(s*base) / float64(slots)
			ws := 0.0
			if s > 1 {
				ws = 8 * float64(s) * float64(n) * float64(in)
			}
			if t := (flops+DequantFlops*main.Dequant)/(d.FLOPs*w/math.Ceil(w)) + ws/d.Bandwidth; t < best {
				best, main.Split = t, s
			}
		}
	}
	main.Grid[2] = main.Split
	return gradXReduced(main, n, in)
}

// GradXNF4 plans dx = dy·W + U·A (n×in) for an NF4 W out×in in blocks of
// block elements (0: DefaultNF4Block). At n <= SmallNMax,
// lora_grad_x_small_nf4: the geometry of lora_grad_x_small with the grid's z
// taking the rows of dy SmallNMax at a time (W read once per 16 rows of dy),
// its split over the rows of [W; A] summed by lora_forward_reduce (r = 0)
// into dx. Above, that, the 128×128 lora_grad_x_tiled_nf4 (no split, no
// workspace) or the m-tiles, whichever has the least modelled time (see
// GradXNF4Candidates).
func GradXNF4(d Device, n, in, out, r, block int) (main Launch, reduce *Launch, workspace int) {
	g := bestGradX(d, GradXNF4Candidates(d, n, in, out, r, block))
	return g.Main, g.Reduce, g.Workspace
}

// GradXPlan is one plan of dx: its main launch, the reduction of its split
// (nil: none) and the floats of its workspace.
type GradXPlan struct {
	Main      Launch
	Reduce    *Launch
	Workspace int
}

// Time is the modelled time of g on d: the Time of each launch plus the
// partial products written to the workspace.
func (g GradXPlan) Time(d Device) float64 {
	t := g.Main.Time(d) + 4*float64(g.Workspace)/d.Bandwidth
	if g.Reduce != nil {
		t += g.Reduce.Time(d)
	}
	return t
}

// GradXNF4Candidates lists the plans GradXNF4 chooses among: the small
// kernel first, and above SmallNMax rows of dy the tiled one and the
// m-tiles (lora_grad_x_m*_nf4, split as for the other types of W).
func GradXNF4Candidates(d Device, n, in, out, r, block int) []GradXPlan {
	wBytes := nf4Bytes(float64(out)*float64(in), block) + 4*float64(r)*float64(in)
	flops := 2 * float64(n) * float64(out+r) * float64(in)
	ioBytes := 4 * float64(n) * float64(in+out)
	c := []GradXPlan{gradXSmallNF4(d, n, in, out, r, wBytes, flops, ioBytes)}
	if n > SmallNMax {
		c = append(c, GradXPlan{Main: Launch{Kernel: KGradXTiledNF4, Grid: [3]int{ceilDiv(n, TileM), ceilDiv(in, TileN), 1},
			TileM: TileM, N: n, Split: 1, MaxSplit: 1, Bytes: wBytes + ioBytes, Flops: flops,
			Dequant: float64(out) * float64(in) * float64(ceilDiv(n, TileM))}})
		c = append(c, gradXMTile(d, n, in, out, r, NF4, wBytes+ioBytes, flops))
	}
	return c
}

// gradXSmallNF4 is the plan of dx on lora_grad_x_small_nf4.
func gradXSmallNF4(d Device, n, in, out, r int, wBytes, flops, ioBytes float64) GradXPlan {
	main := Launch{Kernel: KGradXNF4, Grid: [3]int{ceilDiv(in, GradXSmallCols), 1, ceilDiv(n, SmallNMax)}, N: n,
		Bytes: wBytes + ioBytes, Flops: flops, Reread: float64(ceilDiv(n, SmallNMax)-1) * wBytes,
		Dequant: float64(out) * float64(in) * float64(ceilDiv(n, SmallNMax))}
	// each split at least 8 rows per warp
	main.MaxSplit = max(1, min(MaxSplit, (out+r)/(8*GradXSmallWarps)))
	want := d.Occupancy(main.Kernel) * d.SMs
	if main.BandwidthBound(d) {
		want *= 2
	}
	main.Split = min(main.MaxSplit, max(1, ceilDiv(want, main.Blocks())))
	main.Grid[1] = main.Split
	return gradXReduced(main, n, in)
}
