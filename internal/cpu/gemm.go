package cpu

import (
	"runtime"
	"unsafe"
)

// The packed product y = x·Wᵀ for batches (n ≥ gemmMinRows), in the
// structure of a BLIS-style GEMM:
//
//	x, whole, is packed once into panels of mr rows (gemmPanelRows: six,
//	  or eight where six would pad x more), each KC-step of a panel a run
//	  of mr values (packX);
//	the rows of W are cut into blocks (gemmBlockRows: one panel of gemmNR
//	  rows, two for x in panels of six, while packed x fits 4 MiB, else
//	  gemmNC), split among goroutines;
//	  for each block and each run of gemmKC columns (the inner dimension),
//	  the block is packed into panels of gemmNR rows, each step a run of
//	  gemmNR values, widened to float32 from any type of W (packW, by
//	  16×16 transposes in registers): the panel of a block, at most
//	  gemmKC·gemmNC floats (128 KiB), stays in L2;
//	each 6×64 block of y (two of W's panels; 6×32 for a last odd panel),
//	  or 8×32 block for panels of eight rows, is then one call of a
//	  micro-kernel, which keeps it in registers over the gemmKC steps,
//	  with W's packed panels (gemmKC·gemmNR floats, 16 KiB, each) in L1
//	  while the panels of x stream past them; each call prefetches into
//	  L2 a part of the elements of W that the goroutine packs next, a
//	  line a step over its first steps (gemmKernelPF, gemmKernel6x64), or,
//	  for a part too large for its steps, prefetchRows after the call.
//
// Each element of y accumulates its products in order of the inner index,
// gemmKC of them in registers, then added to the sum so far: float32
// throughout, the products of exactly widened values.
const (
	gemmMR      = 8       // rows of x per call of gemmKernelAVX512 (and of Forward's term, Merge)
	gemmNR      = 32      // rows of W per packed panel, per call of gemmKernelAVX512 and gemmKernel6x32
	gemmMR6     = 6       // rows of x per call of gemmKernel6x64 (two panels of W)
	gemmKC      = 128     // steps of the inner dimension per packed panel
	gemmNC      = 256     // rows of W per block, the unit of the split, for dx and large x
	gemmNCSmall = 32      // rows of W per block of y = x·Wᵀ while x packed fits gemmXFit (two panels for x in panels of six rows)
	gemmXFit    = 1 << 20 // floats of packed x (4 MiB) up to which blocks are gemmNCSmall
	gemmMC      = 128     // rows of x per pass over a packed block of W
	gemmKCShort = 32      // rows of W per packed slab of dx = dy·W for few rows of dy (gradXBlocks)
	gemmNCShort = 1024    // the most columns of W per block then
	// The most rows of x for which dx = dy·W reads a float32 W's panels
	// where they lie, not packed.
	gemmInPlaceRows = 2 * gemmMR
	gemmMinRows     = 16 // the smallest batch the packed product serves
)

// gemmWins reports whether the packed product serves y = x·Wᵀ for n rows
// of x: on processors with AVX-512, for batches of gemmMinRows rows or
// more, and never with a threaded BLAS (which takes the whole product).
// gemmMinRows from BenchmarkPackedProduct (doc.go has the figures): the
// packed product wins from n = 16 for every type of W, and for
// dx = dy·W too but for an NF4 W (gemmGradXWins).
func gemmWins(n, out, in int) bool {
	return useGemm512 && !blasThreaded && n >= gemmMinRows && out >= gemmNR && in >= 16
}

// gemmGradXWins reports whether the packed product serves dx = dy·W for n
// rows of dy and W (out×in) of type t: as gemmWins, from 2·gemmMinRows
// rows for an NF4 W, where productNN is ahead at n = 16.
func gemmGradXWins(t Type, n, in, out int) bool {
	return gemmWins(n, in, out) && (t != NF4 || n >= 2*gemmMinRows)
}

// gemmPool is f32Slabs, the scratch of the products (getGemmBuf).
var gemmPool = &f32Slabs

func getGemmBuf(n int) *[]float32 { return f32Slabs.get(n) }

// gemmRowsPad returns n rounded up to a multiple of mr.
func gemmRowsPad(n, mr int) int { return (n + mr - 1) / mr * mr }

// gemmPanelRows returns the rows of x's panels for the packed product of
// n rows: gemmMR6 unless its padding of x costs more than 4 % over
// gemmMR's (n = 8, 16, 32, 40: eight; n = 64, 66 rows of six, measured
// 1–3 % faster than 64 of eight). Its kernel (6×64) runs
// about 7 % faster than the one of eight rows in L1 (BenchmarkGemmKernel6
// against BenchmarkGemmKernel: 190 against 178 GFLOP/s on one core of
// this package's Sapphire Rapids), and at about 5 % more FLOP/s within
// the product (its share of the CPU time at n = 64, in = out = 4096): 6×64
// makes 24 FMAs a step for four loads of W and six broadcasts, 8×32 16
// for two and eight.
func gemmPanelRows(n int) int {
	if 100*gemmRowsPad(n, gemmMR6) <= 104*gemmRowsPad(n, gemmMR) {
		return gemmMR6
	}
	return gemmMR
}

// packX packs x (n×in) for the micro-kernels into dst (gemmRowsPad(n,
// mr)·in floats), in panels of mr rows (gemmMR or gemmMR6): the run of
// columns [p0, p0+kc) of the panel of rows [i0, i0+mr) starts at
// p0·gemmRowsPad(n, mr) + i0·kc and holds, step by step, the panel's mr
// values of that column, zero past row n.
func packX(dst, x []float32, n, in, mr int) {
	np := gemmRowsPad(n, mr)
	panels := np / mr
	Parallel(panels, np*in, func(lo, hi int) {
		for ip := lo; ip < hi; ip++ {
			i0 := ip * mr
			rows := min(mr, n-i0)
			for p0 := 0; p0 < in; p0 += gemmKC {
				kc := min(gemmKC, in-p0)
				d := dst[p0*np+i0*kc : p0*np+(i0+mr)*kc]
				m := 0
				switch {
				case rows == gemmMR && mr == gemmMR && useFMA:
					// Whole runs of 8 columns by 8×8 transposes.
					m = kc &^ 7
					if m > 0 {
						_ = x[(i0+gemmMR-1)*in+p0+m-1] // bounds: the last element read
						packT8(&d[0], &x[i0*in+p0], m/8, in)
					}
				case rows == gemmMR6 && mr == gemmMR6 && useGemm512:
					m = kc &^ 7
					if m > 0 {
						_ = x[(i0+gemmMR6-1)*in+p0+m-1]
						packT6(&d[0], &x[i0*in+p0], m/8, in)
					}
				}
				if m < kc {
					packPanel(d[m*mr:], mr, rows, kc-m, func(i int) []float32 {
						return x[(i0+i)*in+p0+m : (i0+i)*in+p0+kc]
					})
				}
			}
		}
	})
}

// packW packs rows [j0, j1) of W, columns [p0, p0+kc), into dst: the panel
// of rows [j, j+gemmNR) at (j-j0)·kc, step by step, its gemmNR values of
// that column, widened to float32; zero past row j1. A whole panel's
// columns in multiples of 16 go by 16×16 transposes in registers (packT32
// and its half forms, widening as they load; an NF4 W's rows dequantized
// into row first, scratch of gemmNR·kc floats); the rest by packRows, from
// row for a W other than F32.
func packW(dst []float32, w *Mat, j0, j1, p0, kc int, row []float32) {
	in := w.Cols
	for jp := j0; jp < j1; jp += gemmNR {
		rows := min(gemmNR, j1-jp)
		d := dst[(jp-j0)*kc : (jp-j0+gemmNR)*kc]
		m := 0
		if rows == gemmNR {
			m = kc &^ 15
		}
		if kc >= 16 && (w.Type == NF4 || rows < gemmNR) {
			// Dequantized (an NF4 W) or copied row by row into row, the
			// rows past j1 zero, then packed from there: a panel of
			// fewer than gemmNR rows (W with few rows, or x's rows in
			// the place of W's) by transposes too, not element by
			// element.
			m = kc &^ 15
			for i := range rows {
				w.widen(row[i*kc:(i+1)*kc], (jp+i)*in+p0, kc)
			}
			clear(row[rows*kc : gemmNR*kc])
			packT32(&d[0], &row[0], m, kc)
			packRows(d, row, kc, gemmNR, m, kc)
			continue
		}
		if m > 0 {
			off := jp*in + p0
			switch w.Type {
			case F32:
				_ = w.F32[off+(gemmNR-1)*in+kc-1] // bounds: the last element read
				packT32(&d[0], &w.F32[off], m, in)
			case BF16:
				_ = w.Bits[off+(gemmNR-1)*in+kc-1]
				packT32BF16(&d[0], &w.Bits[off], m, in)
			default:
				_ = w.Bits[off+(gemmNR-1)*in+kc-1]
				packT32F16(&d[0], &w.Bits[off], m, in)
			}
			if m == kc {
				continue
			}
		}
		if w.Type == F32 {
			packRows(d, w.F32[jp*in+p0:], in, rows, m, kc)
			continue
		}
		for i := range rows {
			w.widen(row[i*kc+m:(i+1)*kc], (jp+i)*in+p0+m, kc-m)
		}
		packRows(d, row, kc, rows, m, kc)
	}
}

// packRows writes columns [m, kc) of the panel d (packPanel's layout)
// from rows < gemmNR rows of src (rows ld apart), zero for the rows past
// them.
func packRows(d, src []float32, ld, rows, m, kc int) {
	for i := range rows {
		for p, v := range src[i*ld+m : i*ld+kc] {
			d[(m+p)*gemmNR+i] = v
		}
	}
	for i := rows; i < gemmNR; i++ {
		for p := m; p < kc; p++ {
			d[p*gemmNR+i] = 0
		}
	}
}

// packPanel writes one panel of width rows over kc steps into d: step p
// holds, at d[p·width+i], element p of src(i) for the rows i < rows, and
// zero for the rows past them.
func packPanel(d []float32, width, rows, kc int, src func(i int) []float32) {
	for i := range rows {
		for p, v := range src(i)[:kc] {
			d[p*width+i] = v
		}
	}
	for i := rows; i < width; i++ {
		for p := range kc {
			d[p*width+i] = 0
		}
	}
}

// packWT packs rows [j0, j1) of Wᵀ (the columns of W), its columns [p0,
// p0+kc) (rows of W), as packW does rows of W: for dx = dy·W. Each step is
// gemmNR consecutive elements of one row of W, widened to float32: by
// packN32 and its half forms for a whole panel of an F32, F16 or BF16 W,
// row by row otherwise.
func packWT(dst []float32, w *Mat, j0, j1, p0, kc int, row []float32) {
	in := w.Cols
	for jp := j0; jp < j1; jp += gemmNR {
		d := dst[(jp-j0)*kc : (jp-j0+gemmNR)*kc]
		cols := min(gemmNR, j1-jp)
		off := p0*in + jp
		if cols == gemmNR && w.Type != NF4 {
			last := off + (kc-1)*in + gemmNR - 1 // bounds: the last element read
			switch w.Type {
			case F32:
				_ = w.F32[last]
				packN32(&d[0], &w.F32[off], kc, in)
			case BF16:
				_ = w.Bits[last]
				packN32BF16(&d[0], &w.Bits[off], kc, in)
			default:
				_ = w.Bits[last]
				packN32F16(&d[0], &w.Bits[off], kc, in)
			}
			continue
		}
		for p := range kc {
			dp := d[p*gemmNR : (p+1)*gemmNR]
			w.widen(dp, off+p*in, cols)
			clear(dp[cols:])
		}
	}
}

// slabRows returns where rows [r0, r1) of W, columns [c0, c1), lie in
// memory: the address of the first, the bytes of each row's part and the
// stride between rows, for prefetches (an address only: never read
// through it).
func slabRows(w *Mat, r0, r1, c0, c1 int) (p uintptr, rowBytes, stride int) {
	in := w.Cols
	off := r0*in + c0
	switch w.Type {
	case F32:
		return uintptr(unsafe.Pointer(&w.F32[off])), 4 * (c1 - c0), 4 * in
	case NF4:
		return uintptr(unsafe.Pointer(&w.Codes[off/2])), (c1 - c0 + 1) / 2, in / 2
	default:
		return uintptr(unsafe.Pointer(&w.Bits[off])), 2 * (c1 - c0), 2 * in
	}
}

// prefetchSlab asks for rows [r0, r1) of W, columns [c0, c1), to be brought
// into the L2 cache (prefetchRows): the elements a later packW or packWT
// reads, fetched from memory while the micro-kernel computes.
func prefetchSlab(w *Mat, r0, r1, c0, c1 int) {
	if r0 >= r1 || c0 >= c1 {
		return
	}
	p, rowBytes, stride := slabRows(w, r0, r1, c0, c1)
	prefetchRows(p, r1-r0, stride, rowBytes)
}

// packedProduct computes y = x·Wᵀ for x (n×in), W (out×in) of any type and
// y (n×out) by the packed product (see above).
func packedProduct(y, x []float32, w Mat, n int) { packedProductTerm(y, x, w, n, nil) }

// packedProductTerm is packedProduct, with Forward's adapter term (lt, when
// not nil) computed by its goroutines: its share of T before the first
// block, and the term added to each run of loraTermSlab columns of y or
// more (whole blocks) once written. For a float32 W and the batches
// wideWins serves, W is read in place instead of packed (wideProduct).
func packedProductTerm(y, x []float32, w Mat, n int, lt *loraTerm) {
	if wideWins(w.Type, n, w.Rows, w.Cols) {
		wideProduct(y, x, w, n, lt) // W in place (gemm_wide.go)
		return
	}
	packedWProduct(y, x, w, n, lt)
}

// packedWProduct is packedProductTerm with W packed, whatever n.
func packedWProduct(y, x []float32, w Mat, n int, lt *loraTerm) {
	mr := gemmPanelRows(n)
	xb := getGemmBuf(gemmRowsPad(n, mr) * w.Cols)
	defer gemmPool.Put(xb)
	packX(*xb, x, n, w.Cols, mr)
	packedRunX(y, *xb, n, w.Cols, w.Rows, &w, false, gemmBlockRows(n, w.Cols), gemmKC, mr, lt)
}

// gemmBlockRows returns the rows of W in a block of y = x·Wᵀ, for n rows of
// x of k columns: gemmNCSmall while packed x fits gemmXFit, so that each
// panel of W is packed once over all of k, its rows read from memory whole
// and in order, while x stays in L2 (or L3); gemmNC above, so that x is
// read once per 256 rows of W.
func gemmBlockRows(n, k int) int {
	if gemmRowsPad(n, gemmMR)*k <= gemmXFit {
		return gemmNCSmall
	}
	return gemmNC
}

// gradXBlocks returns the columns of W in a block of dx = dy·W (ncb) and
// the rows of W in each of its packed slabs (kcs) for n rows of dy and W
// of in columns: gemmNC and gemmKC, but, where shortDXSlabs is set, for dy
// of gemmInPlaceRows rows or fewer, where the product is bound by reading
// W: slabs of gemmKCShort rows and up to gemmNCShort columns (whole blocks
// of gemmNC, a block a goroutine at least).
func gradXBlocks(n, in int) (ncb, kcs int) {
	if n > gemmInPlaceRows || !shortDXSlabs {
		return gemmNC, gemmKC
	}
	per := in / runtime.GOMAXPROCS(0) / gemmNC * gemmNC
	return max(gemmNC, min(gemmNCShort, per)), gemmKCShort
}

// shortDXSlabs is whether dx = dy·W for few rows of dy is computed in the
// short slabs of gradXBlocks: set at start-up on every processor but
// AMD's (kernels_amd64.go). Measured on two processors, W read from
// memory:
//
//   - An Intel Xeon (Sapphire Rapids): reading W's columns 128 rows at a
//     time, 1 KiB of each row, ran at 15 GB/s (packWT alone over a
//     4096×4096 W, two cores); 32 rows at a time, 4 KiB of each, at 28
//     GB/s (16 rows: 29; 64: 15). Backward with dx, r = 16, medians of 5,
//     gemmKC against gemmKCShort: in = out = 1024, n = 16: 528 against 492
//     µs; 4096: 5.40 against 4.99 ms. At n = 24 the short slabs lost at
//     4096 (5.82 against 5.93 ms); prefetching the next slab into L2 (as
//     for W's rows) made them slower still.
//   - An AMD EPYC (Zen 4): the short slabs lose at every size. packedGradX
//     alone at n = 16, GFLOP/s, gemmKC (blocks of gemmNC) against the
//     short slabs: float32 W, 1024: 115–120 against 80; 2048: 152–156
//     against 84–88; 4096: 156–164 against 95–98; a BF16 W, 4096: 158–161
//     against 108–113. Slabs of 256 rows lost too (71–85).
var shortDXSlabs = true

// packedGradX computes dx = dy·W for dy (n×out), W (out×in) of any type and
// dx (n×in) by the packed product, W's columns in the place of its rows.
func packedGradX(dx, dy []float32, w Mat, n int) { packedGradXTerm(dx, dy, w, n, nil) }

// packedGradXTerm is packedGradX with Backward's term dx += U·A (lt, when
// not nil) added by its goroutines to each run of columns of dx they have
// written (packedProductTerm).
func packedGradXTerm(dx, dy []float32, w Mat, n int, lt *loraTerm) {
	mr := gemmPanelRows(n)
	xb := getGemmBuf(gemmRowsPad(n, mr) * w.Rows)
	defer gemmPool.Put(xb)
	packX(*xb, dy, n, w.Rows, mr)
	ncb, kcs := gradXBlocks(n, w.Cols)
	packedRunX(dx, *xb, n, w.Rows, w.Cols, &w, true, ncb, kcs, mr, lt)
}

// packedRun computes y (n×nc) = x (n×k)·Bᵀ for B = W (nc×k, packed by
// packW) or, when trans, B = Wᵀ (packed by packWT), in blocks of ncb rows
// of B (a multiple of gemmNR, at most gemmNC). While the micro-kernel
// runs over one packed slab, the elements of W of the goroutine's next
// slab are prefetched into L2, a part during each call (gemmKernelPF) or
// after it, so that packing it reads from the cache rather than memory: always for W's rows, for its
// columns (trans) only at n ≤ gemmMC, where the prefetches cost a float32
// W more than they save above (BenchmarkPackedProduct, dx at n = 256).
func packedRun(y, x []float32, n, k, nc int, w *Mat, trans bool, ncb int) {
	mr := gemmPanelRows(n)
	xb := getGemmBuf(gemmRowsPad(n, mr) * k)
	defer gemmPool.Put(xb)
	packX(*xb, x, n, k, mr)
	packedRunX(y, *xb, n, k, nc, w, trans, ncb, gemmKC, mr, nil)
}

// packXT packs the n×k matrix whose element (i, p) is src[p·ld+i] (the
// transpose of a k×n block, rows ld apart) into dst as packX lays out x in
// panels of mr rows: each step of a panel is mr consecutive elements of
// one row of src, zero past row n.
func packXT(dst, src []float32, n, k, ld, mr int) {
	np := gemmRowsPad(n, mr)
	for i0 := 0; i0 < n; i0 += mr {
		rows := min(mr, n-i0)
		for p0 := 0; p0 < k; p0 += gemmKC {
			kc := min(gemmKC, k-p0)
			d := dst[p0*np+i0*kc : p0*np+(i0+mr)*kc]
			for p := range kc {
				o := (p0+p)*ld + i0
				switch {
				case rows == gemmMR && mr == gemmMR:
					*(*[gemmMR]float32)(d[p*gemmMR:]) = [gemmMR]float32(src[o : o+gemmMR])
				case rows == gemmMR6 && mr == gemmMR6:
					*(*[gemmMR6]float32)(d[p*gemmMR6:]) = [gemmMR6]float32(src[o : o+gemmMR6])
				default:
					e := d[p*mr : (p+1)*mr]
					clear(e[copy(e[:rows], src[o:]):])
				}
			}
		}
	}
}

// packedRunX is packedRun on x already packed (packX's layout, panels of
// mr rows) in ap, with Forward's adapter term lt (see packedProductTerm)
// when not nil. For panels of gemmMR6 rows each call covers two panels of
// W (gemmKernel6x64; a last odd one by gemmKernel6x32), and a block has
// two panels at least. (Blocks of two panels for x in panels of eight rows
// were slower: Forward at n = 16, in = out = 4096, 3.79 against 3.43 ms.)
// Each slab of W packed is kcs steps of the inner dimension (gemmKC, or
// gemmKCShort for dx at few rows: gradXBlocks), a part of one of x's runs
// of gemmKC steps; no prefetching with slabs shorter than gemmKC.
func packedRunX(y, ap []float32, n, k, nc int, w *Mat, trans bool, ncb, kcs, mr int, lt *loraTerm) {
	np := gemmRowsPad(n, mr)
	jstep := gemmNR // columns of y per call
	if mr == gemmMR6 {
		jstep = 2 * gemmNR
		ncb = max(ncb, jstep)
	}
	mc := gemmMC - gemmMC%mr // rows of x per pass: whole panels
	blocks := (nc + ncb - 1) / ncb
	// slab returns the rows [r0, r1) and columns [c0, c1) of W that the
	// slab of block blk at p0 reads.
	slab := func(blk, p0 int) (r0, r1, c0, c1 int) {
		j0, j1 := blk*ncb, min(nc, (blk+1)*ncb)
		p1 := min(k, p0+kcs)
		if trans {
			return p0, p1, j0, j1
		}
		return j0, j1, p0, p1
	}
	Parallel(blocks, n*k*nc, func(lo, hi int) {
		lt.start(lo, hi, blocks)
		termCols := loraTermSlab + ncb // the most columns gathered for lt
		bpLen := ncb * kcs             // a packed slab
		wb := getGemmBuf(bpLen + gemmKC*gemmNR + lt.slabLen(termCols))
		defer gemmPool.Put(wb)
		bp, row := (*wb)[:bpLen], (*wb)[bpLen:bpLen+gemmKC*gemmNR]
		termSlab := (*wb)[bpLen+gemmKC*gemmNR:]
		var tile [gemmMR * 2 * gemmNR]float32
		term0 := lo * ncb // the first column of y whose term is not added
		for blk := lo; blk < hi; blk++ {
			j0, j1 := blk*ncb, min(nc, (blk+1)*ncb)
			// A float32 W's columns for few rows of x and at most
			// gemmKC rows of W (the adapter's products of Backward, x
			// in the place of W): read where they lie, each step 32
			// floats of one row of W, in steps in floats apart (a
			// panel of them is used by at most gemmInPlaceRows/mr
			// calls; copying it costs more). Over more rows of W (dx
			// = dy·W) packing them is faster: Backward at n = 16,
			// in = out = 4096, 6.10 against 5.58 ms (BenchmarkPacked
			// Product's dx rows agree).
			inPlace := trans && w.Type == F32 && n <= gemmInPlaceRows && k <= gemmKC && (j1-j0)%gemmNR == 0
			for p0 := 0; p0 < k; p0 += kcs {
				kc := min(kcs, k-p0)
				// x's run of gemmKC steps holding p0, and the run's
				// length: its panels' steps from p0 on.
				base := p0 - p0%gemmKC
				kcr := min(gemmKC, k-base)
				switch {
				case inPlace:
				case trans:
					packWT(bp, w, j0, j1, p0, kc, row)
				default:
					packW(bp, w, j0, j1, p0, kc, row)
				}
				// The next slab, spread over this one's calls.
				var r0, r1, c0, c1 int
				prefetch := !trans || n <= gemmMC && kcs == gemmKC
				switch {
				case p0+kcs < k:
					r0, r1, c0, c1 = slab(blk, p0+kcs)
				case blk+1 < hi:
					r0, r1, c0, c1 = slab(blk+1, 0)
				}
				calls := (n + mr - 1) / mr * ((j1 - j0 + jstep - 1) / jstep)
				call := 0
				acc := 0
				if p0 > 0 {
					acc = 1
				}
				for i0 := 0; i0 < n; i0 += mc {
					i1 := min(n, i0+mc)
					for jr := j0; jr < j1; jr += jstep {
						// b: W's panel at jr (the next one b2 bytes on),
						// its steps ldb floats apart.
						b, ldb, b2 := &bp[(jr-j0)*kc], gemmNR, 4*gemmNR*kc
						if inPlace {
							b, ldb, b2 = &w.F32[p0*w.Cols+jr], w.Cols, 4*gemmNR
						}
						cols := min(jstep, j1-jr)
						for ir := i0; ir < i1; ir += mr {
							a := &ap[base*np+ir*kcr+(p0-base)*mr]
							rows := min(mr, n-ir)
							q0, q1 := r0+call*(r1-r0)/calls, r0+(call+1)*(r1-r0)/calls
							call++
							// The part of the next slab within the
							// kernel's steps, a line a step; a larger
							// part by prefetchSlab after the call.
							var p uintptr
							var lines, rowBytes, stride int
							if prefetch && q1 > q0 && c1 > c0 {
								p, rowBytes, stride = slabRows(w, q0, q1, c0, c1)
								if lines = (q1 - q0) * ((rowBytes + 63) / 64); lines > kc&^1 {
									lines = 0
								}
							}
							c, ldc := &y[ir*nc+jr], nc
							edge := rows < mr || cols < jstep && cols != gemmNR
							if edge {
								// An edge block: through tile, only its
								// rows and columns within y read and
								// written.
								c, ldc = &tile[0], jstep
								if acc != 0 {
									for i := range rows {
										copy(tile[i*jstep:i*jstep+cols], y[(ir+i)*nc+jr:])
									}
								}
							}
							switch {
							case mr == gemmMR && !inPlace && lines == 0:
								gemmKernelAVX512(kc, a, b, c, ldc, acc)
							case mr == gemmMR:
								gemmKernelPF(kc, a, b, c, ldc, acc, p, lines, rowBytes, stride, ldb)
							case cols > gemmNR:
								gemmKernel6x64(kc, a, b, c, ldc, acc, p, lines, rowBytes, stride, ldb, b2)
							default:
								gemmKernel6x32(kc, a, b, c, ldc, acc, p, lines, rowBytes, stride, ldb, b2)
							}
							if edge {
								for i := range rows {
									copy(y[(ir+i)*nc+jr:(ir+i)*nc+jr+cols], tile[i*jstep:])
								}
							}
							if prefetch && lines == 0 {
								prefetchSlab(w, q0, q1, c0, c1)
							}
						}
					}
				}
			}
			if lt != nil && (j1-term0 >= loraTermSlab || blk == hi-1) {
				lt.add(y[term0:], nc, 0, n, term0, j1, termSlab)
				term0 = j1
			}
		}
	})
}
