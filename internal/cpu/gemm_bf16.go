package cpu

import (
	"math"
	"runtime"
	"sync"
	"sync/atomic"
	"unsafe"
)

// The packed product y = x·Wᵀ of a BF16 W with a batch x whose values are
// all bfloat16 (x widened from BF16, or any float32 x that happens to hold
// only such values), n ≥ bfMinRows, on the processor's bf16 dot-product
// instructions: TDPBF16PS (AMX) where the processor and the operating
// system allow it, VDPBF16PS (AVX-512 BF16) otherwise.
//
//	x is packed once, as bfloat16, into panels of 16 rows (packXBF16,
//	  packX16; from BF16 patterns, packXBits and packT16): pair p of a panel (columns 2p and 2p+1) is 64 bytes, its
//	  16 rows' two values side by side, zero past row n and past column
//	  in; the check that every value is a bfloat16 one, and the least
//	  magnitude, come with it (checkX);
//	the rows of W are cut into blocks of bf16BlockRows (bfMC = 256 where
//	  x has more than 64 rows, 64 otherwise, fewer for a small W), split
//	  among goroutines; for each group of bfNC rows of x, each block is
//	  copied a chunk of bfChunk bytes (512 or 2048 columns) at a time into
//	  tiles of 16 rows, 32 columns a step, 1 KiB each (packBlockBF16,
//	  packTiles16: the copy also finds the chunk's least magnitude), zero
//	  past row out and past column in; the chunk stays in L2 while the
//	  group's panels pass it, and the group's rows of x are read once per
//	  block (from L3 when they outgrow L2: the larger the block, the fewer
//	  times); where x has at most bfInPlaceRows rows (one group) and the
//	  block's rows and columns fill whole tiles, the AMX kernel reads W's
//	  tiles where they lie instead (amxTilesW), its vector unit taking the
//	  least magnitude from them while the tiles compute, and the check
//	  follows the chunk's sums (in scratch until the group ends, so y is
//	  untouched when it fails): the bf16 Forward at n = 16, 32 and 64,
//	  in = out = 4096, took 0.90, 1.16 and 1.79 ms against 1.23, 1.42 and
//	  1.92 ms packed (medians of 4 alternating runs); at n = 128 and 256
//	  packing was as fast or faster. Once a call has read every value of
//	  W, its least magnitude is kept (w.Least) and later calls read W's
//	  tiles without finding it (0.82, 1.02 and 1.42 ms against 0.87,
//	  1.13 and 1.77 ms finding it, medians of 4 alternating runs);
//	the kernel (amxTiles, amxTilesW or dpbf16Tiles) computes 16×16 tiles
//	  of yᵀ, the block's tiles against a group's panels, bfKC columns a
//	  call (in place, the whole chunk; on AMX each call also prefetches
//	  into L2 its share of the rows of W that the goroutine packs or reads
//	  next, a few lines a step: amxTilesPF, bf16NextChunk), into a
//	  block of float32 sums whose tiles transpose16 then writes into y
//	  (or, for a y of BF16 patterns, into scratch, each row of the block
//	  then rounded into y once Forward's term is added: bf16IO).
//
// Measured on 4096×4096, n = 16, 64, 256, 2 cores of a Sapphire Rapids
// shared with other work (BenchmarkBF16Product, medians of 5 runs, one
// run of the three): on AMX 2.4, 4.2 and 13 ms (later, by CPU time, medians
// of 7 alternating runs: 2.5, 3.8 and 10.9 ms, against 2.4, 3.9 and 14.0
// with blocks of 64 rows of W packed whole); on VDPBF16PS 8.2, 25 and
// 154 ms; without the bf16 instructions 12, 44 and 149 ms. VDPBF16PS
// issues at about a quarter of the float32 FMA's rate on this processor
// (half its FLOP rate): at n = 256 it is no faster than the float32
// packed product there. It is the path of processors with AVX-512 BF16
// and no AMX.
//
// Both instructions multiply bfloat16 values exactly (their 8-bit
// significands fit float32's) and add in float32, but they read subnormal
// inputs as zero and flush subnormal results to zero. bf16Safe keeps them
// off the values where that could change a result: with every nonzero
// |x| and |w| normal and their product at least 2⁻¹⁰³, each product is a
// multiple of 2⁻¹¹⁹ (of magnitude ≥ 2⁻¹⁰³ with a 16-bit significand), so
// every partial sum, rounded to float32 or not, is a multiple of 2⁻¹²⁶:
// zero or normal, never subnormal. x failing it takes the path of a BF16
// W (Product); a block of W failing it is computed by matGemvGo.
// VDPBF16PS adds each pair's odd product, then its even one, to the sum:
// float32 sums in another order. TDPBF16PS rounds its sums its own way
// (not any order of float32 sums): README's contract states it.
const (
	bfMinRows = 16        // the smallest batch the bf16 product serves
	bfMC      = 256       // rows of W per block, the unit of the split (a multiple of 32)
	bfChunk   = 256 << 10 // bytes of W packed at a time: bfChunk/(2·block rows) columns, a multiple of bfKC
	bfNC      = 256       // rows of x per group (a multiple of 32; the last may be 16 short)
	bfKC      = 256       // columns per kernel call (a multiple of 32)
	// The most rows of x (rounded up to 16) for which the AMX kernel
	// reads W's tiles where they lie (amxTilesW), not packed.
	bfInPlaceRows = 64
)

// bf16Guarded counts the blocks of W that bf16Safe has sent to matGemvGo
// (for the tests).
var bf16Guarded atomic.Int64

// bf16Wins reports whether the bf16 product serves y = x·Wᵀ for a BF16 W
// (out×in) and n rows of x, when x holds bfloat16 values.
func bf16Wins(n, out, in int) bool {
	return useBF16DP && n >= bfMinRows && out >= 16 && in >= 16
}

// bf16Tiles is the kernel of the bf16 product at the level the process
// runs at: amxTiles or dpbf16Tiles.
func bf16Tiles() func(a *uint16, lda int, b *uint16, ldb int, c *float32, mt, nt, k32, acc int) {
	if useAMX {
		return amxTiles
	}
	return dpbf16Tiles
}

// bf16Safe reports whether the bf16 instructions give the products and
// sums of float32 arithmetic (see above) for values whose smallest nonzero
// magnitudes are the BF16 patterns xmin and wmin (0: no nonzero value).
func bf16Safe(xmin, wmin uint16) bool {
	if xmin == 0 || wmin == 0 {
		return true
	}
	if xmin < 0x80 || wmin < 0x80 { // a subnormal
		return false
	}
	return float64(widen1(BF16, xmin))*float64(widen1(BF16, wmin)) >= 0x1p-103
}

// minMagBF16 returns the smallest nonzero magnitude among the BF16
// patterns of s (sign cleared), or 0 when there is none.
func minMagBF16(s []uint16) uint16 {
	m := len(s) &^ 15
	var mn uint16
	if m > 0 && useBF16DP {
		mn = minMag16(&s[0], m)
	} else {
		m = 0
	}
	for _, h := range s[m:] {
		if v := h & 0x7fff; v != 0 && (mn == 0 || v < mn) {
			mn = v
		}
	}
	return mn
}

// bf16Pool recycles the packed bfloat16 operands by size class.
var bf16Pool slabPool[uint16]

func getBF16Buf(n int) *[]uint16 { return bf16Pool.get(n) }

// round32 returns n rounded up to a multiple of 32.
func round32(n int) int { return (n + 31) &^ 31 }

// round16 returns n rounded up to a multiple of 16.
func round16(n int) int { return (n + 15) &^ 15 }

// bf16Exact reports whether every value of x is a bfloat16 value: its
// float32 pattern's low 16 bits zero.
func bf16Exact(x []float32) bool {
	for _, v := range x {
		if math.Float32bits(v)&0xffff != 0 {
			return false
		}
	}
	return true
}

// panelPairs returns the elements of one packed panel of x for in columns:
// round32(in)/2 pairs of 16 rows × 2.
func panelPairs(in int) int { return round32(in) * 16 }

// packXBF16 packs x (n×in, bfloat16 values) into dst, round16(n)/16
// panels of panelPairs(in) elements: element (16·q+r, k) at
// q·panelPairs(in) + (k/2)·32 + 2r + k%2, zero past row n and column in.
// It returns the smallest nonzero magnitude of x's patterns (0 when there
// is none), and false when a value of x is not a bfloat16 value (dst then
// partly written).
func packXBF16(dst []uint16, x []float32, n, in int) (uint16, bool) {
	ldb := panelPairs(in)
	full := in / 32 // steps whole in x
	return checkedPanels(round16(n)/16, n*in, func(q int) (uint32, bool) {
		d := dst[q*ldb : (q+1)*ldb]
		rows := max(0, min(16, n-16*q))
		if rows == 0 {
			clear(d)
			return math.MaxUint32, true
		}
		or, l := checkXBF16(x[16*q*in : (16*q+rows)*in])
		if or&0xffff != 0 {
			return 0, false
		}
		xs := x[16*q*in:]
		if rows == 16 && full > 0 {
			packX16(&d[0], &xs[0], in, full)
		} else {
			packXGo(d, xs, in, rows, 0, 32*full)
		}
		if full*32 < in {
			packXGo(d, xs, in, rows, 32*full, in)
		}
		return l, true
	})
}

// checkedPanels calls pack on the panels q < panels, split among
// goroutines (work: the multiply-adds they serve), each packing panel q of
// 16 rows and returning the least of checkXBF16's (pattern & 0x7fff) − 1
// over its values (math.MaxUint32 for none) and whether every value was a
// bfloat16 one. It returns the smallest nonzero magnitude over all panels
// (0 when there is none), or false when a panel's check failed (the others
// then possibly not packed).
func checkedPanels(panels, work int, pack func(q int) (least uint32, ok bool)) (uint16, bool) {
	least := make([]uint32, panels)
	bad := make([]bool, panels)
	Parallel(panels, work, func(lo, hi int) {
		for q := lo; q < hi; q++ {
			var ok bool
			if least[q], ok = pack(q); !ok {
				bad[q] = true
				return
			}
		}
	})
	l := uint32(math.MaxUint32)
	for q := range panels {
		if bad[q] {
			return 0, false
		}
		l = min(l, least[q])
	}
	return uint16(l + 1), true
}

// checkXBF16 returns the OR of the patterns of x and the least of their
// ((pattern >> 16) & 0x7fff) − 1 as uint32 (a zero's wraps to the
// largest): by checkX on the whole 16s where the processor has it.
func checkXBF16(x []float32) (or, least uint32) {
	m := len(x) &^ 15
	least = math.MaxUint32
	if m > 0 && useBF16DP {
		or, least = checkX(&x[0], m)
	} else {
		m = 0
	}
	for _, v := range x[m:] {
		b := math.Float32bits(v)
		or |= b
		least = min(least, b>>16&0x7fff-1)
	}
	return or, least
}

// packXGo writes the steps of columns [c0, c1) (c0 a multiple of 32) of
// rows < rows of x (in columns, rows in apart) into the panel d as
// packXBF16 lays it out, zero past column c1 up to its step's end and in
// the rows from rows to 16.
func packXGo(d []uint16, x []float32, in, rows, c0, c1 int) {
	for k := c0; k < round32(c1); k++ {
		e := d[k/2*32+k%2:]
		for r := range 16 {
			var h uint16
			if r < rows && k < c1 {
				h = uint16(math.Float32bits(x[r*in+k]) >> 16)
			}
			e[2*r] = h
		}
	}
}

// bf16Product computes y = x·Wᵀ for x (n×in), a BF16 W (out×in) and y
// (n×out) by the bf16 product, and reports whether it did: not where
// bf16Wins says no, nor when x holds a value that is not bfloat16 or
// fails bf16Safe (y then untouched).
func bf16Product(y, x []float32, w Mat, n int) bool {
	return bf16Run(&bf16IO{x: x, y: y}, w, n, nil)
}

// bf16ProductTerm is bf16Product, with Forward's adapter term (lt, when
// not nil) computed by its goroutines: its share of T before the first
// block, and the term added to each block of y once written.
func bf16ProductTerm(y, x []float32, w Mat, n int, lt *loraTerm) bool {
	return bf16Run(&bf16IO{x: x, y: y}, w, n, lt)
}

// bf16IO holds the operands of the bf16 product: x as float32 values (x)
// or as BF16 patterns (xb), and y as float32 (y) or as BF16 patterns (yb,
// each element's float32 sum, the term included, rounded once to nearest
// even, as a float32 y converted afterwards would be).
type bf16IO struct {
	x  []float32
	xb []uint16
	y  []float32
	yb []uint16

	wideOnce sync.Once
	wide     *[]float32 // xb widened, for the blocks of W that bf16Safe refuses
}

// xf32 returns x as float32 values: x, or xb widened once (freed by done).
func (io *bf16IO) xf32() []float32 {
	if io.xb == nil {
		return io.x
	}
	io.wideOnce.Do(func() {
		io.wide = getGemmBuf(len(io.xb))
		widenHalf(BF16, *io.wide, io.xb)
	})
	return (*io.wide)[:len(io.xb)]
}

// done releases what xf32 took.
func (io *bf16IO) done() {
	if io.wide != nil {
		gemmPool.Put(io.wide)
	}
}

// bf16Run computes y = x·Wᵀ (plus lt's term, when not nil) for the
// operands of io, n rows, by the bf16 product, and reports whether it did:
// not where bf16Wins says no, nor when x holds a value that is not
// bfloat16 or fails bf16Safe (y then untouched, lt's T not begun).
func bf16Run(io *bf16IO, w Mat, n int, lt *loraTerm) bool {
	out, in := w.Rows, w.Cols
	if !bf16Wins(n, out, in) || io.xb == nil && !bf16Exact(io.x[:min(len(io.x), 64)]) {
		return false
	}
	defer io.done()
	npad := round16(n)
	ldb := panelPairs(in)
	xb := getBF16Buf(npad / 16 * ldb)
	defer bf16Pool.Put(xb)
	xp := *xb
	var xmin uint16
	ok := true
	if io.xb != nil {
		xmin = packXBits(xp, io.xb, n, in)
	} else {
		xmin, ok = packXBF16(xp, io.x, n, in)
	}
	if !ok || xmin != 0 && xmin < 0x80 { // a subnormal x: see bf16Safe
		return false
	}
	// W's least magnitude: known from an earlier call (w.Least), and safe
	// with x's, the blocks read in place do not find it again; unknown, it
	// is found by this call's blocks and, when they read every value, kept.
	wLeast, wKnown := w.least()
	wSafe := wKnown && bf16Safe(xmin, wLeast)
	var found struct {
		sync.Mutex
		least   uint16
		partial bool // a block broke off before reading all of W's values
	}
	kern := bf16Tiles()
	ks := round32(in) / 32 // steps of 32 columns
	mc := bf16BlockRows(out, npad)
	kw := bfChunk / (64 * mc) // steps of W packed at a time
	blocks := (out + mc - 1) / mc
	Parallel(blocks, n*out*in, func(lo, hi int) {
		lt.start(lo, hi, blocks)
		ysLen := 0
		if io.yb != nil {
			ysLen = mc * bfNC
		}
		cb := getGemmBuf(mc*bfNC + lt.slabLen(mc) + ysLen)
		defer gemmPool.Put(cb)
		c0buf := (*cb)[:mc*bfNC]
		ys := (*cb)[mc*bfNC : mc*bfNC+ysLen]
		slab := (*cb)[mc*bfNC+ysLen:]
		pb := getBF16Buf(mc * kw * 32)
		defer bf16Pool.Put(pb)
		// target returns where the block's rows i0… and columns o0… of y
		// go as float32 (element (i, o) at (i−i0)·ld + o − o0): y itself,
		// or ys, whose rows finish rounds into yb.
		target := func(i0, o0 int) ([]float32, int) {
			if io.yb != nil {
				return ys, mc
			}
			return io.y[i0*out+o0:], out
		}
		finish := func(yt []float32, ld, i0, i1, o0, o1 int) {
			lt.add(yt, ld, i0, i1, o0, o1, slab)
			if io.yb != nil {
				for i := i0; i < i1; i++ {
					narrowHalf(BF16, io.yb[i*out+o0:i*out+o1], yt[(i-i0)*ld:(i-i0)*ld+o1-o0])
				}
			}
		}
		var least uint16 // over the chunks of W this goroutine checked
		partial := false
		defer func() {
			found.Lock()
			found.least = minNonzero(found.least, least)
			found.partial = found.partial || partial
			found.Unlock()
		}()
		for blk := lo; blk < hi; blk++ {
			o0, o1 := blk*mc, min(out, (blk+1)*mc)
			mrows := round32(o1 - o0)
			mt := mrows / 16
			guarded := false
			// W's tiles read where they lie (amxTilesW) for few rows
			// of x, whole tiles of W's rows and columns.
			inPlace := useAMX && npad <= bfInPlaceRows && in%32 == 0 && mrows == o1-o0
			for i0 := 0; i0 < npad; i0 += bfNC {
				nrows := min(bfNC, npad-i0)
				c := c0buf[:mrows*nrows]
				nt := nrows / 16
				b := xp[i0/16*ldb:]
				// The block kw steps at a time: packed (and checked) once
				// per group of x, in L2 while the group's panels pass it.
				for c0 := 0; c0 < ks; c0 += kw {
					c1 := min(ks, c0+kw)
					var a []uint16
					var wmin uint16 // W's least nonzero magnitude in the chunk
					if !inPlace {
						a = (*pb)[:mrows*(c1-c0)*32]
						if wmin = packBlockBF16(a, &w, o0, o1, c0, c1); !bf16Safe(xmin, wmin) {
							guarded = true
							break
						}
					}
					lda := (c1 - c0) * 512
					// The chunk this goroutine packs next, its rows
					// spread over this chunk's calls, prefetched into
					// L2 by their steps (amxTilesPF, dpbf16TilesPF).
					pr0, pr1, pc0, pc1 := bf16NextChunk(out, in, ks, kw, mc, o0, o1, c0, i0+bfNC < npad, blk+1 < hi)
					// Steps a call: bfKC columns packed; in place the
					// whole chunk, each row of W read in longer runs
					// (2048 columns at blocks of 64 rows: with W in
					// memory, Forward at n = 16, 32, 64, in = out =
					// 4096, took 1.40, 1.68 and 2.06 ms against 1.55,
					// 1.96 and 2.19 in calls of bfKC; with W in L3 the
					// same or faster: medians of 5 alternating runs).
					ks32 := bfKC / 32
					if inPlace {
						ks32 = kw
					}
					calls := (c1 - c0 + ks32 - 1) / ks32
					call := 0
					for s0 := c0; s0 < c1; s0 += ks32 {
						k32 := min(ks32, c1-s0)
						q0, q1 := pr0+call*(pr1-pr0)/calls, pr0+(call+1)*(pr1-pr0)/calls
						call++
						if inPlace {
							// c holds the sums until the group ends: the
							// chunk's check below comes in time.
							var p, pEnd uintptr
							var rowBytes, stride int
							if q1 > q0 && pc1 > pc0 {
								p, rowBytes, stride = slabRows(&w, q0, q1, pc0, pc1)
								pEnd = p + uintptr((q1-q0)*stride)
							}
							wmin = minNonzero(wmin, amxTilesW(&w.Bits[o0*in+s0*32], in, &b[s0*512], ldb, &c[0], mt, nt, k32, b2i(s0 > 0), p, pEnd, rowBytes, stride, !wSafe))
							continue
						}
						if q1 > q0 && pc1 > pc0 {
							p, rowBytes, stride := slabRows(&w, q0, q1, pc0, pc1)
							pf := amxTilesPF
							if !useAMX {
								pf = dpbf16TilesPF
							}
							pf(&a[(s0-c0)*512], lda, &b[s0*512], ldb, &c[0], mt, nt, k32, b2i(s0 > 0), p, p+uintptr((q1-q0)*stride), rowBytes, stride)
							continue
						}
						kern(&a[(s0-c0)*512], lda, &b[s0*512], ldb, &c[0], mt, nt, k32, b2i(s0 > 0))
					}
					if inPlace && !bf16Safe(xmin, wmin) {
						guarded = true
						break
					}
					least = minNonzero(least, wmin)
				}
				if guarded {
					partial = true
					break
				}
				// The tiles of yᵀ into y: whole ones by transpose16.
				yt, ld := target(i0, o0)
				for tj := range nt {
					i := i0 + 16*tj
					if i >= n {
						break
					}
					for ti := range mt {
						o := o0 + 16*ti
						if o >= o1 {
							break
						}
						t := c[(ti*nt+tj)*256 : (ti*nt+tj+1)*256]
						at := (i-i0)*ld + o - o0
						if i+16 <= n && o+16 <= o1 {
							transpose16(&yt[at], ld, &t[0])
							continue
						}
						for r := range min(16, n-i) {
							ys := yt[at+r*ld : at+r*ld+min(o1, o+16)-o]
							for q := range ys {
								ys[q] = t[16*q+r]
							}
						}
					}
				}
				finish(yt, ld, i0, min(n, i0+nrows), o0, o1)
			}
			if guarded {
				// Rows of y this block had written from earlier groups
				// are written again, all of them exactly, with their
				// terms.
				bf16Guarded.Add(1)
				x := io.xf32()
				wo := Mat{Rows: o1 - o0, Cols: in, Type: BF16, Bits: w.Bits[o0*in : o1*in]}
				for i0 := 0; i0 < n; i0 += bfNC {
					i1 := min(n, i0+bfNC)
					yt, ld := target(i0, o0)
					matGemvGo(yt, x[i0*in:i1*in], &wo, 0, i1-i0, ld, 0, o1-o0)
					finish(yt, ld, i0, i1, o0, o1)
				}
			}
		}
	})
	if w.Least != nil && !wKnown && !found.partial {
		w.Least.Store(1<<16 | uint32(found.least))
	}
	return true
}

// least returns the least nonzero magnitude among the patterns of the BF16
// W that w.Least holds (0 when every value is zero), and whether it holds
// one.
func (w *Mat) least() (uint16, bool) {
	if w.Least == nil {
		return 0, false
	}
	v := w.Least.Load()
	return uint16(v), v != 0
}

// minNonzero returns the lesser of two least nonzero magnitudes, each 0
// for none.
func minNonzero(a, b uint16) uint16 {
	if a == 0 || b != 0 && b < a {
		return b
	}
	return a
}

// bf16NextChunk returns the rows [r0, r1) and columns [c0, c1) of W (out×in,
// ks steps of 32 columns) that a goroutine of bf16Run packs after the
// chunk of steps [s0, s0+kw) of the block of rows [o0, o1) (mc rows a
// block): the block's next chunk; else its first again, for the next group
// of x (moreX); else the first of the goroutine's next block (moreBlocks);
// else none (r0 = r1).
func bf16NextChunk(out, in, ks, kw, mc, o0, o1, s0 int, moreX, moreBlocks bool) (r0, r1, c0, c1 int) {
	switch {
	case s0+kw < ks:
		return o0, o1, 32 * (s0 + kw), min(in, 32*min(ks, s0+2*kw))
	case moreX:
		return o0, o1, 0, min(in, 32*kw)
	case moreBlocks:
		return o1, min(out, o1+mc), 0, min(in, 32*kw)
	}
	return 0, 0, 0, 0
}

// packXBits packs x (n×in BF16 patterns) into dst as packXBF16 does a
// float32 x of bfloat16 values, and returns the smallest nonzero magnitude
// among its patterns (0 when there is none): each panel of 16 whole rows,
// where in is even, by packT16 (a pair of patterns one 32-bit element);
// the rest element by element.
func packXBits(dst []uint16, x []uint16, n, in int) uint16 {
	ldb := panelPairs(in)
	full := in / 32
	l, _ := checkedPanels(round16(n)/16, n*in, func(q int) (uint32, bool) {
		d := dst[q*ldb : (q+1)*ldb]
		rows := max(0, min(16, n-16*q))
		xs := x[16*q*in : (16*q+rows)*in]
		c0 := 0
		if rows == 16 && full > 0 && in%2 == 0 && useBF16DP {
			packT16((*float32)(unsafe.Pointer(&d[0])), (*float32)(unsafe.Pointer(&xs[0])), full, in/2)
			c0 = 32 * full
		}
		for k := c0; k < round32(in); k++ {
			e := d[k/2*32+k%2:]
			for r := range 16 {
				var h uint16
				if r < rows && k < in {
					h = xs[r*in+k]
				}
				e[2*r] = h
			}
		}
		if m := minMagBF16(xs); m != 0 {
			return uint32(m) - 1, true
		}
		return math.MaxUint32, true
	})
	return l
}

// bf16BlockRows returns the rows of W in one block of the bf16 product
// (the unit of the split among goroutines) for out rows and npad padded
// rows of x: bfMC, where each row of W packed is used by more than 64 rows
// of x, 64 otherwise (W's stream is then the product's cost, and a chunk
// of bfChunk bytes holds longer runs of each row); halved (down to 32)
// while there would be fewer than two blocks a goroutine.
func bf16BlockRows(out, npad int) int {
	mc := bfMC
	if npad <= 64 {
		mc = 64
	}
	for mc > 32 && (out+mc-1)/mc < 2*runtime.GOMAXPROCS(0) {
		mc /= 2
	}
	return mc
}

// packBlockBF16 packs rows [o0, o1) of the BF16 W, the steps [s0, s1) of
// 32 columns, into dst as the kernels read them, in tiles of 16 rows
// (packTiles16's layout), tile t at t·(s1−s0)·512: zero past column in
// (the padding of x there is zero too, and a stale Inf or NaN would make
// 0·Inf) and past row o1 in the whole steps. The rows past o1 in the last
// step are left as they are: they only reach the sums of rows of yᵀ that
// are not written. It returns the least nonzero magnitude among the
// patterns it packed (0 when there is none).
func packBlockBF16(dst []uint16, w *Mat, o0, o1, s0, s1 int) uint16 {
	var mn uint16
	least := func(m uint16) {
		if m != 0 && (mn == 0 || m < mn) {
			mn = m
		}
	}
	in := w.Cols
	ks := s1 - s0
	full := min(in/32, s1) - s0 // steps whole in W
	for t := 0; 16*t < round32(o1-o0); t++ {
		d := dst[t*ks*512 : (t+1)*ks*512]
		r0 := o0 + 16*t
		rows := max(0, min(16, o1-r0))
		if rows == 16 && full > 0 {
			least(packTiles16(&d[0], &w.Bits[r0*in+32*s0], in, full))
		} else if full > 0 {
			for s := range full {
				for o := range rows {
					copy(d[s*512+32*o:s*512+32*o+32], w.Bits[(r0+o)*in+32*(s0+s):])
				}
				clear(d[s*512+32*rows : (s+1)*512])
			}
			least(minMagBF16(d[:full*512]))
		}
		if full < ks {
			e := d[full*512:]
			k0 := 32 * (s0 + full)
			for o := range rows {
				clear(e[32*o+copy(e[32*o:32*o+32], w.Bits[(r0+o)*in+k0:(r0+o+1)*in]) : 32*o+32])
			}
			least(minMagBF16(e[:32*rows]))
		}
	}
	return mn
}

// b2i returns 1 for true, 0 for false.
func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// bf16TilesGo is dpbf16Tiles as a loop on slices, a and b BF16 patterns,
// lda and ldb in elements: each pair's odd product added before its even
// one, as VDPBF16PS adds them, so that the two agree bit for bit. (The
// products of bfloat16 values are exact in float32: a fused multiply-add
// rounds the same.)
func bf16TilesGo(a []uint16, lda int, b []uint16, ldb int, c []float32, mt, nt, k32 int, acc bool) {
	for ti := range mt {
		for tj := range nt {
			t := c[(ti*nt+tj)*256 : (ti*nt+tj+1)*256]
			for o := range 16 {
				for r := range 16 {
					var s float32
					if acc {
						s = t[o*16+r]
					}
					for p := range k32 * 16 {
						wp := a[ti*lda+p/16*512+32*o+2*(p%16):]
						xp := b[tj*ldb+p*32+2*r:]
						s += widen1(BF16, wp[1]) * widen1(BF16, xp[1])
						s += widen1(BF16, wp[0]) * widen1(BF16, xp[0])
					}
					t[o*16+r] = s
				}
			}
		}
	}
}

// transposeGo is transpose16 as a loop on slices.
func transposeGo(y []float32, ldy int, c []float32) {
	for r := range 16 {
		for o := range 16 {
			y[r*ldy+o] = c[16*o+r]
		}
	}
}

// packTilesGo is packTiles16 as a loop on slices.
func packTilesGo(dst, src []uint16, lds, k32 int) {
	for s := range k32 {
		for o := range 16 {
			copy(dst[s*512+32*o:s*512+32*o+32], src[o*lds+32*s:])
		}
	}
}
