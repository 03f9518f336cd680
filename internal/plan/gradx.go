package plan

// The plans of Backward's dx = dy·W + U·A.

// GradX plans dx = dy·W + U·A (n×in) for W out×in. For n <= SmallNMax,
// lora_grad_x_small: 128 columns of dx per block (four per lane, float4),
// the out + r rows of [W; A] split over the grid's y in Split parts whose
// partial sums go to a workspace, reduced in order by lora_forward_reduce
// (with r = 0: no rank term). Otherwise the 128×128 tiled kernel.
func GradX(d Device, n, in, out, r int) (main Launch, reduce *Launch, workspace int) {
	wBytes := 4 * float64(out+r) * float64(in)
	flops := 2 * float64(n) * float64(out+r) * float64(in)
	ioBytes := 4 * float64(n) * float64(in+out)
	if n > SmallNMax {
		return Launch{Kernel: KGradXTiled, Grid: [3]int{ceilDiv(n, TileM), ceilDiv(in, TileN), 1}, TileM: TileM, N: n,
			Split: 1, MaxSplit: 1, Bytes: wBytes + ioBytes, Flops: flops}, nil, 0
	}
	main = Launch{Kernel: KGradX, Grid: [3]int{ceilDiv(in, GradXSmallCols), 1, 1}, Bytes: wBytes + ioBytes, Flops: flops}
	// each split at least 8 rows per warp
	main.MaxSplit = max(1, min(MaxSplit, (out+r)/(8*GradXSmallWarps)))
	want := d.Occupancy(main.Kernel) * d.SMs
	if main.BandwidthBound(d) {
		want *= 2
	}
	main.Split = min(main.MaxSplit, max(1, ceilDiv(want, main.Blocks())))
	main.Grid[1] = main.Split
	if main.Split > 1 {
		workspace = main.Split * n * in
		reduce = &Launch{Kernel: KRed, Grid: [3]int{ceilDiv(in, ReduceThreads), n, 1}, Split: 1, MaxSplit: 1,
			Bytes: 4 * float64(workspace+n*in), Flops: float64(workspace)}
	}
	return main, reduce, workspace
}

// GradXNF4 plans dx = dy·W + U·A (n×in) for an NF4 W out×in in blocks of
// block elements (0: DefaultNF4Block). At n <= SmallNMax,
// lora_grad_x_small_nf4: the geometry of lora_grad_x_small with the grid's z
// taking the rows of dy SmallNMax at a time (W read once per 16 rows of dy),
// its split over the rows of [W; A] summed by lora_forward_reduce (r = 0)
// into dx. Above, that or the 128×128 lora_grad_x_tiled_nf4 (no split, no
// workspace), whichever has the least modelled time (see GradXNF4Candidates).
func GradXNF4(d Device, n, in, out, r, block int) (main Launch, reduce *Launch, workspace int) {
	c := GradXNF4Candidates(d, n, in, out, r, block)
	best := c[0]
	for _, g := range c[1:] {
		if g.Time(d) < best.Time(d) {
			best = g
		}
	}
	return best.Main, best.Reduce, best.Workspace
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
// kernel first, and above SmallNMax rows of dy the tiled one.
func GradXNF4Candidates(d Device, n, in, out, r, block int) []GradXPlan {
	wBytes := nf4Bytes(float64(out)*float64(in), block) + 4*float64(r)*float64(in)
	flops := 2 * float64(n) * float64(out+r) * float64(in)
	ioBytes := 4 * float64(n) * float64(in+out)
	c := []GradXPlan{gradXSmallNF4(d, n, in, out, r, wBytes, flops, ioBytes)}
	if n > SmallNMax {
		c = append(c, GradXPlan{Main: Launch{Kernel: KGradXTiledNF4, Grid: [3]int{ceilDiv(n, TileM), ceilDiv(in, TileN), 1},
			TileM: TileM, N: n, Split: 1, MaxSplit: 1, Bytes: wBytes + ioBytes, Flops: flops,
			Dequant: float64(out) * float64(in) * float64(ceilDiv(n, TileM))}})
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
	g := GradXPlan{Main: main}
	if main.Split > 1 {
		g.Workspace = main.Split * n * in
		g.Reduce = &Launch{Kernel: KRed, Grid: [3]int{ceilDiv(in, ReduceThreads), min(n, 65535), 1}, Split: 1, MaxSplit: 1,
			Bytes: 4 * float64(g.Workspace+n*in), Flops: float64(g.Workspace)}
	}
	return g
}
