package cpu

import (
	"math"
	"sync/atomic"
)

// The packed product dx = dy·W of a BF16 W (out×in) with a batch dy whose
// values are all bfloat16 (dy of a BF16 layer, staged to float32), n ≥
// bfMinRows, on the bf16 dot-product instructions, as bf16Product computes
// y = x·Wᵀ (gemm_bf16.go: the same kernels, the same guard, the same stated
// exception on AMX). The roles turn: dy is the kernels' tiled operand and
// W the paired one.
//
//	dy is packed once, as bfloat16, in tiles of 16 rows and 32 columns,
//	  1 KiB each (packDYBF16: tile ti at ti·lda, step s at s·512), zero
//	  past row n (up to a multiple of 32 on AMX, whose kernel takes tiles
//	  in pairs; of 16 on VDPBF16PS) and past column out; the check that
//	  every value is a bfloat16 one, and the least magnitude, come with
//	  it;
//	the columns of W are cut into blocks of bfGXCols, split among
//	  goroutines; each block is packed bfGXSteps steps of 32 of its rows
//	  at a time (packPairsBF16): panel tj of 16 columns, step s, holds pair p
//	  (rows 32s+2p and 32s+2p+1) of column r at 32p + 2r, the two rows'
//	  values side by side, as the kernels read x's panels;
//	the kernel computes 16×16 tiles of dx, rows of dy by columns of W,
//	  into a block of float32 sums copied into dx row by row.
//
// A block whose packed values fail bf16Safe against dy's least magnitude
// is computed by gradXColsGo instead.
const (
	bfGXCols  = 256 // columns of W per block, the unit of the split (a multiple of 32)
	bfGXSteps = 8   // steps of 32 rows of W packed at a time: 16 KiB a panel pair
)

// bf16GradXGuarded counts the blocks of W that bf16Safe has sent to
// gradXColsGo (for the tests).
var bf16GradXGuarded atomic.Int64

// bf16GradX computes dx = dy·W for dy (n×out), a BF16 W (out×in) and dx
// (n×in) by the bf16 product, and reports whether it did: not where
// bf16Wins says no, nor when dy holds a value that is not bfloat16 or is
// subnormal (dx then untouched).
func bf16GradX(dx, dy []float32, w Mat, n int) bool { return bf16GradXTerm(dx, dy, w, n, nil) }

// bf16GradXTerm is bf16GradX with Backward's term dx += U·A (lt, when not
// nil) added by its goroutines to each block of dx they have written.
func bf16GradXTerm(dx, dy []float32, w Mat, n int, lt *loraTerm) bool {
	out, in := w.Rows, w.Cols
	if !bf16Wins(n, in, out) || !bf16Exact(dy[:min(len(dy), 64)]) {
		return false
	}
	// Tiles of dy: in pairs on AMX, one at a time on VDPBF16PS, where a
	// tile of zeros would cost as much as one of dy. Measured
	// (bf16GradX alone, 4096×4096, W from memory, AMD EPYC Zen 4, 2 cores):
	// n = 16, 5.0–5.1 ms padded to 32 rows against 3.57 ms.
	mt := round16(n) / 16
	if useAMX {
		mt = round32(n) / 16
	}
	ks := round32(out) / 32
	lda := ks * 512
	ab := getBF16Buf(mt * lda)
	defer bf16Pool.Put(ab)
	ap := *ab
	dmin, ok := packDYBF16(ap, dy, n, out, mt)
	if !ok || dmin != 0 && dmin < 0x80 { // a subnormal dy: see bf16Safe
		return false
	}
	kern := bf16Tiles()
	blocks := (in + bfGXCols - 1) / bfGXCols
	Parallel(blocks, n*out*in, func(lo, hi int) {
		cb := getGemmBuf(mt*16*bfGXCols + lt.slabLen(bfGXCols))
		defer gemmPool.Put(cb)
		slab := (*cb)[mt*16*bfGXCols:]
		pb := getBF16Buf(bfGXCols / 16 * bfGXSteps * 512)
		defer bf16Pool.Put(pb)
		for blk := lo; blk < hi; blk++ {
			j0, j1 := blk*bfGXCols, min(in, (blk+1)*bfGXCols)
			nt := round16(j1-j0) / 16
			c := (*cb)[:mt*nt*256]
			guarded := false
			for s0 := 0; s0 < ks; s0 += bfGXSteps {
				k32 := min(bfGXSteps, ks-s0)
				ldb := k32 * 512
				b := (*pb)[:nt*ldb]
				packPairsBF16(b, &w, s0, k32, j0, j1)
				if !bf16Safe(dmin, minMagBF16(b)) {
					guarded = true
					break
				}
				kern(&ap[s0*512], lda, &b[0], ldb, &c[0], mt, nt, k32, b2i(s0 > 0))
			}
			if guarded {
				bf16GradXGuarded.Add(1)
				gradXColsGo(dx, dy, &w, n, j0, j1)
				lt.add(dx[j0:], in, 0, n, j0, j1, slab)
				continue
			}
			for i := range n {
				ti, o := i/16, i%16
				d := dx[i*in+j0 : i*in+j1]
				for tj := 0; 16*tj < len(d); tj++ {
					t := c[(ti*nt+tj)*256+16*o:]
					copy(d[16*tj:min(len(d), 16*tj+16)], t[:16])
				}
			}
			lt.add(dx[j0:], in, 0, n, j0, j1, slab)
		}
	})
	return true
}

// packDYBF16 packs dy (n×out, bfloat16 values) into dst, mt tiles (at
// least round16(n)/16) of round32(out)·16 elements: element (16·t+o, k) at
// t·round32(out)·16 + (k/32)·512 + 32·o + k%32, zero past row n and column
// out. It returns the smallest nonzero magnitude of dy's patterns (0 when
// there is none), and false when a value of dy is not a bfloat16 value
// (dst then partly written).
func packDYBF16(dst []uint16, dy []float32, n, out, mt int) (uint16, bool) {
	lda := round32(out) * 16
	return checkedPanels(mt, n*out, func(t int) (uint32, bool) {
		d := dst[t*lda : (t+1)*lda]
		rows := max(0, min(16, n-16*t))
		if rows == 0 {
			clear(d)
			return math.MaxUint32, true
		}
		or, l := checkXBF16(dy[16*t*out : (16*t+rows)*out])
		if or&0xffff != 0 {
			return 0, false
		}
		for s := 0; 32*s < out; s++ {
			e := d[s*512 : (s+1)*512]
			for o := range 16 {
				row := e[32*o : 32*o+32]
				if o >= rows {
					clear(row)
					continue
				}
				src := dy[(16*t+o)*out+32*s : (16*t+o)*out+min(out, 32*s+32)]
				for k, v := range src {
					row[k] = uint16(math.Float32bits(v) >> 16)
				}
				clear(row[len(src):])
			}
		}
		return l, true
	})
}

// packPairsBF16 packs the rows [32·s0, 32·(s0+k32)) and columns [j0, j1)
// of the BF16 W into dst as the kernels read x's panels: panel tj (columns
// j0+16tj …) at tj·k32·512, step s at s·512, pair p of column r at
// 32p + 2r, the values of rows 32(s0+s)+2p and 32(s0+s)+2p+1 side by
// side; zero past row out and past column j1 (up to the panel's end).
func packPairsBF16(dst []uint16, w *Mat, s0, k32, j0, j1 int) {
	out, in := w.Rows, w.Cols
	ldb := k32 * 512
	full := min(k32, max(0, out/32-s0)) // steps whole in W
	panels := (j1 - j0) / 16            // panels whole in W
	if !useBF16DP {
		full, panels = 0, 0
	}
	if full > 0 && panels > 0 {
		// Each pair of rows across the whole panels, read in order.
		_ = w.Bits[(32*(s0+full)-1)*in+j0+16*panels-1] // bounds: the last element read
		_ = dst[(panels-1)*ldb+(full-1)*512+511]
		for s := range full {
			for p := range 16 {
				o := 32*(s0+s) + 2*p
				packPairsRows(&dst[s*512+32*p], ldb, &w.Bits[o*in+j0], in, panels)
			}
		}
	}
	for tj := 0; j0+16*tj < j1; tj++ {
		e := dst[tj*ldb : (tj+1)*ldb]
		j := j0 + 16*tj
		cols := min(16, j1-j)
		s := 0
		if tj < panels {
			s = full
		}
		for ; s < k32; s++ {
			d := e[s*512 : (s+1)*512]
			for p := range 16 {
				for r := range 16 {
					for h := range 2 {
						var v uint16
						if o := 32*(s0+s) + 2*p + h; o < out && r < cols {
							v = w.Bits[o*in+j+r]
						}
						d[32*p+2*r+h] = v
					}
				}
			}
		}
	}
}

// gradXColsGo computes the columns [j0, j1) of dx = dy·W for any W, the
// portable way: each row of W widened into a block on the stack, then added
// to the rows of dx in o order, sums in float32 from zero.
func gradXColsGo(dx, dy []float32, w *Mat, n, j0, j1 int) {
	in, out := w.Cols, w.Rows
	for i := range n {
		clear(dx[i*in+j0 : i*in+j1])
	}
	var buf [256]float32
	for c0 := j0; c0 < j1; c0 += len(buf) {
		c1 := min(j1, c0+len(buf))
		t := buf[:c1-c0]
		for o := range out {
			w.widen(t, o*in+c0, len(t))
			for i := range n {
				g := dy[i*out+o]
				d := dx[i*in+c0 : i*in+c1]
				for j, v := range t {
					d[j] += g * v
				}
			}
		}
	}
}
