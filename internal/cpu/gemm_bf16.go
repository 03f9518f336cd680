package cpu

import (
	"math"
	"sync"
)

// The packed product y = x·Wᵀ of a BF16 W with a batch x whose values are
// all bfloat16 (x widened from BF16, or any float32 x that happens to hold
// only such values), n ≥ bfMinRows, on the processor's bf16 dot-product
// instructions: TDPBF16PS (AMX) where the processor and the operating
// system allow it, VDPBF16PS (AVX-512 BF16) otherwise.
//
//	x is packed once, as bfloat16, into panels of 16 rows: pair p of a
//	  panel (columns 2p and 2p+1) is 64 bytes, its 16 rows' two values
//	  side by side, zero past row n and past column in (panelPairs);
//	W is read where it is, 16 rows at a time, a pair of columns of a row
//	  at a time: its rows are cut into blocks of bfMC, split among
//	  goroutines; only the last block when out is not a multiple of 32
//	  (copied into a zero-padded block), and the last in mod 32 columns
//	  (copied into a zero-padded 32-column tail) are copied;
//	the kernel (dpbf16Tiles or amxTiles) computes 16×16 tiles of yᵀ, a
//	  block of W's rows against a group of bfNC rows of x, bfKC columns
//	  at a time, into a block of float32 sums that is then written into y.
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
	bfMinRows = 16  // the smallest batch the bf16 product serves
	bfMC      = 64  // rows of W per block, the unit of the split (a multiple of 32)
	bfNC      = 256 // rows of x per group (a multiple of 32)
	bfKC      = 512 // columns per kernel call (a multiple of 32)
)

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

var bf16Pool sync.Pool

func getBF16Buf(n int) *[]uint16 {
	p, _ := bf16Pool.Get().(*[]uint16)
	if p == nil {
		p = new([]uint16)
	}
	if cap(*p) < n {
		*p = make([]uint16, n)
	}
	*p = (*p)[:n]
	return p
}

// round32 returns n rounded up to a multiple of 32.
func round32(n int) int { return (n + 31) &^ 31 }

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

// packXBF16 packs x (n×in, bfloat16 values) into dst, round32(n)/16
// panels of panelPairs(in) elements: element (16·q+r, k) at
// q·panelPairs(in) + (k/2)·32 + 2r + k%2, zero past row n and column in.
// It returns the smallest nonzero magnitude of x's patterns (0 when there
// is none), and false when a value of x is not a bfloat16 value (dst then
// partly written).
func packXBF16(dst []uint16, x []float32, n, in int) (uint16, bool) {
	panels := round32(n) / 16
	ldb := panelPairs(in)
	kpad := round32(in)
	mins := make([]uint16, panels)
	bad := make([]bool, panels)
	Parallel(panels, n*in, func(lo, hi int) {
		for q := lo; q < hi; q++ {
			d := dst[q*ldb : (q+1)*ldb]
			var mn uint16
			for r := range 16 {
				i := 16*q + r
				k0 := 0
				if i < n {
					for k, v := range x[i*in : (i+1)*in] {
						b := math.Float32bits(v)
						if b&0xffff != 0 {
							bad[q] = true
							return
						}
						h := uint16(b >> 16)
						if m := h & 0x7fff; m != 0 && (mn == 0 || m < mn) {
							mn = m
						}
						d[k>>1*32+2*r+k&1] = h
					}
					k0 = in
				}
				for k := k0; k < kpad; k++ {
					d[k>>1*32+2*r+k&1] = 0
				}
			}
			mins[q] = mn
		}
	})
	var mn uint16
	for q := range panels {
		if bad[q] {
			return 0, false
		}
		if m := mins[q]; m != 0 && (mn == 0 || m < mn) {
			mn = m
		}
	}
	return mn, true
}

// bf16Product computes y = x·Wᵀ for x (n×in), a BF16 W (out×in) and y
// (n×out) by the bf16 product, and reports whether it did: not where
// bf16Wins says no, nor when x holds a value that is not bfloat16 or
// fails bf16Safe (y then untouched).
func bf16Product(y, x []float32, w Mat, n int) bool {
	out, in := w.Rows, w.Cols
	if !bf16Wins(n, out, in) || !bf16Exact(x[:min(len(x), 64)]) {
		return false
	}
	npad := round32(n)
	ldb := panelPairs(in)
	xb := getBF16Buf(npad / 16 * ldb)
	defer bf16Pool.Put(xb)
	xp := *xb
	xmin, ok := packXBF16(xp, x, n, in)
	if !ok || xmin != 0 && xmin < 0x80 { // a subnormal x: see bf16Safe
		return false
	}
	kern := bf16Tiles()
	main := in &^ 31
	blocks := (out + bfMC - 1) / bfMC
	Parallel(blocks, n*out*in, func(lo, hi int) {
		var wpad, wtail []uint16
		cb := getGemmBuf(bfMC * bfNC)
		defer gemmPool.Put(cb)
		if main < in {
			p := getBF16Buf(bfMC * 32)
			defer bf16Pool.Put(p)
			wtail = *p
		}
		for blk := lo; blk < hi; blk++ {
			o0, o1 := blk*bfMC, min(out, (blk+1)*bfMC)
			rows, mrows := o1-o0, round32(o1-o0)
			a := w.Bits[o0*in : o1*in]
			if !bf16Safe(xmin, minMagBF16(a)) {
				matGemvGo(y, x, &w, 0, n, out, o0, o1)
				continue
			}
			if mrows != rows {
				if wpad == nil {
					p := getBF16Buf(bfMC * in)
					defer bf16Pool.Put(p)
					wpad = *p
				}
				copy(wpad, a)
				clear(wpad[rows*in : mrows*in])
				a = wpad[:mrows*in]
			}
			if main < in {
				for o := range mrows {
					t := wtail[o*32 : o*32+32]
					copy(t, a[o*in+main:o*in+in])
					clear(t[in-main:])
				}
			}
			for i0 := 0; i0 < npad; i0 += bfNC {
				nrows := min(bfNC, npad-i0)
				c := (*cb)[:mrows*nrows]
				mt, nt := mrows/16, nrows/16
				b := xp[i0/16*ldb:]
				for p0 := 0; p0 < main; p0 += bfKC {
					kc := min(bfKC, main-p0)
					kern(&a[p0], in, &b[p0*16], ldb, &c[0], mt, nt, kc/32, b2i(p0 > 0))
				}
				if main < in {
					kern(&wtail[0], 32, &b[main*16], ldb, &c[0], mt, nt, 1, b2i(main > 0))
				}
				// The tiles of yᵀ into y.
				for tj := range nt {
					for r := range 16 {
						i := i0 + 16*tj + r
						if i >= n {
							break
						}
						yi := y[i*out+o0 : i*out+o1]
						for ti := range min(mt, (len(yi)+15)/16) {
							t := c[(ti*nt+tj)*256+r:]
							ys := yi[16*ti : min(len(yi), 16*ti+16)]
							for o := range ys {
								ys[o] = t[16*o]
							}
						}
					}
				}
			}
		}
	})
	return true
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
// one, as VDPBF16PS adds them, so that the two agree bit for bit.
func bf16TilesGo(a []uint16, lda int, b []uint16, ldb int, c []float32, mt, nt, k32 int, acc bool) {
	for ti := range mt {
		for tj := range nt {
			t := c[(ti*nt+tj)*256 : (ti*nt+tj+1)*256]
			for o := range 16 {
				wr := a[(16*ti+o)*lda:]
				for r := range 16 {
					var s float32
					if acc {
						s = t[o*16+r]
					}
					for p := range k32 * 16 {
						xp := b[tj*ldb+p*32+2*r:]
						s += widen1(BF16, wr[2*p+1]) * widen1(BF16, xp[1])
						s += widen1(BF16, wr[2*p]) * widen1(BF16, xp[0])
					}
					t[o*16+r] = s
				}
			}
		}
	}
}
