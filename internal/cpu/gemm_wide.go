package cpu

// The product y = x·Wᵀ of a float32 W for batches of wideMinRows to
// gemmXRows rows, W read where it lies: the packed product's operands in
// each other's roles, so that W, not x, is the broadcast one and needs no
// packing. x is packed once, as the packed product packs W's rows: panels
// of 32 rows, each step 32 values, in runs of wideKC columns; two panels
// (64 rows) are one call's. Each call of gemmKernelW6x64 takes six rows
// of W where they lie (each step broadcasts one value of each) against 64
// rows of x, and sums a 6×64 block of yᵀ over a run of wideKC columns.
// W's rows are split among the goroutines in groups of six; each
// goroutine, for each run of columns, calls the kernel on its groups in
// turn (the run of packed x, 256 KiB, stays in L2 meanwhile; W's rows
// stream from memory, six at a time, each read once), its blocks of yᵀ in
// scratch, then writes them into y transposed and adds the adapter's term;
// a share of more than wideChunk groups goes so in chunks, so that the
// scratch stays in L2 whatever the rows of W.
//
// Measured (in = out = 4096, float32, two cores of the Sapphire Rapids of
// doc.go, medians of 3, GFLOP/s, packed product against this one):
// n = 52: 253 against 246; n = 56: 264 against 264; n = 60: 272 against
// 280; n = 64: 270 against 302. Runs of 512 columns: 298 at n = 64; of
// 2048: 317, as 1024; prefetching W's rows in the kernel gained nothing.
// Over more rows of x, each group's rows read again from L1 for each 64
// rows of x: n = 128 about the same (293 against 304), n = 192 and 256
// slower (314 against 300, 322 against 270), so it serves one call's rows.
// Each element of y accumulates its products in order of the inner index,
// wideKC of them in registers, then added to the sum so far: float32
// throughout, as the packed product does in runs of gemmKC.
const (
	gemmXRows   = 2 * gemmNR // rows of x per call of gemmKernelW6x64
	wideKC      = 1024       // columns per run
	wideMinRows = 58         // the fewest rows of x it serves
	wideMinCols = 1024       // the fewest columns of W it serves
	wideGroup   = gemmMR6    // rows of W per call
	wideChunk   = 342        // the most groups of W's rows whose blocks of yᵀ a goroutine keeps at once (0.5 MiB for 64 rows of x)
)

// wideWins reports whether the product with W in place serves y = x·Wᵀ for
// n rows of x and W (out×in) of type t: a float32 W, where the packed
// product serves, from wideMinRows to gemmXRows rows of x, rows of W of
// wideMinCols or more, and two groups of them at least. Over shorter rows
// the blocks of yᵀ, each written into y element by element, cost more
// than packing W saves (n = 64, out = 1024, µs, packed against W in place:
// in = 16: 27 against 109; 256: 148 against 228; 512: 288 against 356;
// 1024: 576 against 575; out = 4096, in = 512: 1028 against 1155; 1024:
// 2041 against 1950; 2048: 3845 against 3571).
func wideWins(t Type, n, out, in int) bool {
	return t == F32 && gemmWins(n, out, in) && n >= wideMinRows && n <= gemmXRows && in >= wideMinCols && out >= 2*wideGroup
}

// wideProduct computes y = x·Wᵀ (+ the adapter's term lt when not nil) for
// x (n×in) and a float32 W (out×in) with W in place; any n ≥ 1 (x in
// panels of gemmXRows rows, the last zero past n).
func wideProduct(y, x []float32, w Mat, n int, lt *loraTerm) {
	in, out := w.Cols, w.Rows
	np := gemmRowsPad(n, gemmXRows) // x's rows in whole panels of 64
	xb := getGemmBuf(np*in + gemmNR*wideKC)
	defer gemmPool.Put(xb)
	xt, row := (*xb)[:np*in], (*xb)[np*in:]
	xm := Mat{Rows: n, Cols: in, Type: F32, F32: x}
	for p0 := 0; p0 < in; p0 += wideKC {
		kc := min(wideKC, in-p0)
		d := xt[p0*np : (p0+kc)*np]
		packW(d, &xm, 0, n, p0, kc, row)
		if q := gemmRowsPad(n, gemmNR); q < np {
			clear(d[q*kc:])
		}
	}
	groups := (out + wideGroup - 1) / wideGroup
	Parallel(groups, n*in*out, func(lo, hi int) {
		lt.start(lo, hi, groups)
		// The share's groups in chunks of at most wideChunk, of sizes
		// within one of each other: a chunk's blocks of yᵀ, scratch,
		// stay in L2 over its runs of columns.
		chunks := (hi - lo + wideChunk - 1) / wideChunk
		size := (hi - lo + chunks - 1) / chunks
		tile := wideGroup * np
		buf := getGemmBuf(size*tile + lt.slabLen(loraTermSlab))
		defer gemmPool.Put(buf)
		ct, termSlab := (*buf)[:size*tile], (*buf)[size*tile:]
		var tail []float32
		if hi == groups && out%wideGroup != 0 {
			// The last group's rows, those past W's zero, copied.
			tb := getGemmBuf(wideGroup * in)
			defer gemmPool.Put(tb)
			tail = (*tb)[:wideGroup*in]
			rows := out % wideGroup
			copy(tail, w.F32[(out-rows)*in:])
			clear(tail[rows*in:])
		}
		for c0 := lo; c0 < hi; c0 += size {
			c1 := min(hi, c0+size)
			for p0 := 0; p0 < in; p0 += wideKC {
				kc := min(wideKC, in-p0)
				acc := 0
				if p0 > 0 {
					acc = 1
				}
				for g := c0; g < c1; g++ {
					a := w.F32[g*wideGroup*in+p0:]
					if tail != nil && g == groups-1 {
						a = tail[p0:]
					}
					_ = a[(wideGroup-1)*in+kc-1] // bounds: the last element read
					for q := 0; q < np; q += gemmXRows {
						gemmKernelW6x64(kc, &a[0], in, &xt[p0*np+q*kc], &ct[(g-c0)*tile+q], np, acc, 4*gemmNR*kc)
					}
				}
			}
			// yᵀ's blocks into y, then the term over runs of
			// loraTermSlab columns.
			j0, j1 := c0*wideGroup, min(out, c1*wideGroup)
			for i := range n {
				yi := y[i*out : (i+1)*out]
				for j := j0; j < j1; j++ {
					g := j / wideGroup
					yi[j] = ct[(g-c0)*tile+(j-g*wideGroup)*np+i]
				}
			}
			for o := j0; o < j1; o += loraTermSlab {
				o1 := min(j1, o+loraTermSlab)
				lt.add(y[o:], out, 0, n, o, o1, termSlab)
			}
		}
	})
}
