package cpu

import "runtime"

// Rank-r row updates: dst[i,:] += Σₖ coef_i[k]·a[k,:], the arithmetic of
// Merge (W += c·B·A), of Forward's expansion (y += T·Bᵀ) and of the rank-r
// term of dx. Each element's sum is accumulated from zero in k order and
// then added, so that negating the coefficients takes back bit for bit
// what they added, whatever the blocking and the split among goroutines.

// rankRow computes dst[j] += Σₖ coef[k]·a[k·lda+j] for j < len(dst), the sum
// accumulated from zero in k order and then added to dst, so that negating
// coef subtracts bit for bit what it added. a holds len(coef) rows of stride
// lda ≥ len(dst). The columns in whole groups of 8 go to rankRowFMA where
// the processor has it; the rest to rankRowGo.
func rankRow(dst, a, coef []float32, lda int) {
	n, r := len(dst), len(coef)
	if n == 0 || r == 0 {
		return
	}
	_ = a[(r-1)*lda+n-1] // bounds: the last element read
	m := n &^ 7
	if !useFMA {
		m = 0
	}
	if m > 0 {
		rankRowFMA(&dst[0], &a[0], &coef[0], m, r, lda)
	}
	if m < n {
		rankRowGo(dst[m:], a[m:], coef, lda)
	}
}

// rankRowGo computes dst[j] += Σₖ coef[k]·a[k·lda+j] for j < len(dst), the
// sum accumulated from zero in k order. It is the portable form of rankRow.
func rankRowGo(dst, a, coef []float32, lda int) {
	const chunk = 256
	var delta [chunk]float32
	for j0 := 0; j0 < len(dst); j0 += chunk {
		d := delta[:min(chunk, len(dst)-j0)]
		clear(d)
		for k, ck := range coef {
			row := a[k*lda+j0 : k*lda+j0+len(d)]
			for j, v := range row {
				d[j] += ck * v
			}
		}
		out := dst[j0 : j0+len(d)]
		for j, v := range d {
			out[j] += v
		}
	}
}

// rankRowHalf is rankRow for a half dst: dst[j] ← round(float32(dst[j]) +
// Σₖ coef[k]·a[k·lda+j]), the float32 value computed exactly as rankRow
// computes it on a float32 copy of dst, rounded once to nearest even. The
// columns rankRow gives its AVX2 kernel (a multiple of 8 from the start)
// go to the fused kernel; the rest, or all of them without it, through
// blocks of 256 widened on the stack, each a multiple of 8 but the last,
// so that every column takes the path it takes in rankRow.
func rankRowHalf(dt Type, dst []uint16, a, coef []float32, lda int) {
	n, r := len(dst), len(coef)
	if n == 0 || r == 0 {
		return
	}
	_ = a[(r-1)*lda+n-1] // bounds: the last element read
	m := 0
	switch {
	case dt == BF16 && useBF16FMA:
		m = n &^ 7
		if m > 0 {
			rankRowBF16(&dst[0], &a[0], &coef[0], m, r, lda)
		}
	case dt == F16 && useF16FMA:
		m = n &^ 7
		if m > 0 {
			rankRowF16(&dst[0], &a[0], &coef[0], m, r, lda)
		}
	}
	const chunk = 256
	var buf [chunk]float32
	for j0 := m; j0 < n; j0 += chunk {
		j1 := min(n, j0+chunk)
		t := buf[:j1-j0]
		widenHalf(dt, t, dst[j0:j1])
		rankRow(t, a[j0:], coef, lda)
		narrowHalf(dt, dst[j0:j1], t)
	}
}

// rankRowFromHalf computes dst[j] += Σₖ coef[k]·a[k·lda+j] for j <
// len(dst), with a of dtype dt widened in registers, each sum accumulated
// from zero in k order and then added, as rankRow does. It needs the
// assembly kernels (useHalfKernel).
func rankRowFromHalf(dt Type, dst []float32, a []uint16, coef []float32, lda int) {
	kern := rankRowFromBF16
	if dt == F16 {
		kern = rankRowFromF16
	}
	n, r := len(dst), len(coef)
	if n == 0 || r == 0 {
		return
	}
	_ = a[(r-1)*lda+n-1] // bounds: the last element read
	m := n &^ 7
	if m > 0 {
		kern(&dst[0], &a[0], &coef[0], m, r, lda)
	}
	for j := m; j < n; j++ {
		var d float32
		for k, ck := range coef {
			d += ck * widen1(dt, a[k*lda+j])
		}
		dst[j] += d
	}
}

// rankSlabBytes bounds the slab of a that rankUpdateBlocked keeps in the L2
// cache while every row uses it: whole rows of a up to r = 16 at in = 4096,
// so that W streams row after row; blocks of columns above that.
const rankSlabBytes = 256 << 10

// rankUpdateF32 computes dst[i,:] += Σₖ coef_i[k]·a[k,:] for the rows
// i < rows of dst (rows×cols, row-major, float32): by rankUpdateGemm where
// rankGemmWins (the coefficients and a, whole, written first by coef and
// pack), else by rankUpdateBlocked and rankRow. Both compute rankRow's
// values, bit for bit.
func rankUpdateF32(dst []float32, rows, cols, r int, coef func(i int, c []float32), pack func(slab []float32, j0, j1 int)) {
	if rankGemmWins(rows, cols) {
		cb, ab := getGemmBuf(rows*r), getGemmBuf(r*cols)
		defer gemmPool.Put(cb)
		defer gemmPool.Put(ab)
		for i := range rows {
			coef(i, (*cb)[i*r:(i+1)*r])
		}
		pack(*ab, 0, cols)
		rankUpdateGemm(dst, rows, cols, r, *ab, *cb)
		return
	}
	rankUpdateBlocked(rows, cols, r, coef, pack, func(i, j0, j1 int, slab, c []float32) {
		rankRow(dst[i*cols+j0:i*cols+j1], slab, c, j1-j0)
	})
}

// rankUpdateBlocked computes dst[i,:] += Σₖ coef_i[k]·a[k,:] for the rows
// i < rows of a matrix dst (rows×cols, row-major), with a r×cols. coef(i, c)
// writes coef_i into c; pack(slab, j0, j1) writes columns j0…j1−1 of a into
// slab, row-major r×(j1−j0); row(i, j0, j1, slab, c) applies the update to
// columns j0…j1−1 of row i of dst (rankRow's arithmetic). The columns go in
// blocks whose slab of a fits rankSlabBytes (at least 256 columns, each
// block starting at a multiple of 64): each block of a is packed once,
// contiguous, and used by every row from the cache. Blocks and ranges of
// rows are split among goroutines. Each element's sum runs in k order from
// zero, whatever the split.
func rankUpdateBlocked(rows, cols, r int, coef func(i int, c []float32), pack func(slab []float32, j0, j1 int), row func(i, j0, j1 int, slab, c []float32)) {
	width := min(cols, max(256, rankSlabBytes/(4*r)&^63))
	blocks := (cols + width - 1) / width
	groups := max(1, min(rows, runtime.GOMAXPROCS(0)/blocks)) // few blocks: split rows too
	Parallel(blocks*groups, rows*cols*r, func(lo, hi int) {
		c := make([]float32, r)
		slab := make([]float32, r*width)
		for task := lo; task < hi; task++ {
			blk, g := task/groups, task%groups
			j0, j1 := blk*width, min(cols, (blk+1)*width)
			pack(slab, j0, j1)
			for i := g * rows / groups; i < (g+1)*rows/groups; i++ {
				coef(i, c)
				row(i, j0, j1, slab, c)
			}
		}
	})
}

// adapterUpdate returns rankUpdateBlocked's coef and pack for W += c·B·A,
// with A r×in and B out×r: coef_i = c·B[i,:], and the slabs of A.
func adapterUpdate(a, b []float32, in, r int, c float32) (coef func(i int, c []float32), pack func(slab []float32, j0, j1 int)) {
	coef = func(i int, coef []float32) {
		for k, v := range b[i*r : (i+1)*r] {
			coef[k] = c * v
		}
	}
	pack = func(slab []float32, j0, j1 int) {
		width := j1 - j0
		for k := range r {
			copy(slab[k*width:(k+1)*width], a[k*in+j0:k*in+j1])
		}
	}
	return coef, pack
}

// RankUpdate computes W += c·B·A in place for W (out×in) of any type, A
// (r×in) and B (out×r), each element of W read and written once: row i
// gets Σₖ (c·B[i,k])·A[k,:], accumulated from zero in k order and then
// added, so that c and −c add and remove bit for bit the same delta. A
// half W is updated in float32, each element exactly as an F32 W holding
// its value would be, and rounded once to nearest even.
func RankUpdate(w Mat, a, b []float32, r int, c float32) {
	coef, pack := adapterUpdate(a, b, w.Cols, r, c)
	if w.Type.half() {
		bits, dt, cols := w.Bits, w.Type, w.Cols
		rankUpdateBlocked(w.Rows, cols, r, coef, pack, func(i, j0, j1 int, slab, c []float32) {
			rankRowHalf(dt, bits[i*cols+j0:i*cols+j1], slab, c, j1-j0)
		})
		return
	}
	rankUpdateF32(w.F32, w.Rows, w.Cols, r, coef, pack)
}

// rankGemmWins reports whether W += c·B·A for a float32 W (rows×cols) runs
// on the packed product's micro-kernel (rankUpdateGemm): on processors with
// AVX-512, for a W of at least one whole block.
func rankGemmWins(rows, cols int) bool {
	return useGemm512 && rows >= gemmMR && cols >= gemmNR
}

// rankUpdateGemm computes dst[i,:] += Σₖ cb[i·r+k]·a[k,:] for dst (rows×cols,
// float32) and a (r×cols): the rank-r update of Merge on the packed
// product's micro-kernel. Each block of gemmMR rows and gemmNR columns is
// one call of gemmKernelAVX512 over all r terms, its sums accumulated from
// zero in k order in registers and then added to dst: rankRow's arithmetic
// exactly, so that an element's value does not depend on whether it falls
// in a whole block; the rows and columns past the last whole block go to
// rankRow. a is packed once (packN32: panels of gemmNR columns, term after
// term), the coefficients once (packX: panels of gemmMR rows); the blocks
// of rows are split among goroutines, each reading its rows of dst once,
// in order. The micro-kernel keeps all r terms in one run, so that r may
// exceed gemmKC.
func rankUpdateGemm(dst []float32, rows, cols, r int, a, cb []float32) {
	strips, panels := rows/gemmMR, cols/gemmNR
	_, _ = dst[rows*cols-1], cb[rows*r-1] // bounds: the last elements read
	ab := getGemmBuf(panels * gemmNR * r)
	defer gemmPool.Put(ab)
	ap := *ab
	Parallel(panels, panels*gemmNR*r*32, func(lo, hi int) {
		for jp := lo; jp < hi; jp++ {
			_ = a[(r-1)*cols+jp*gemmNR+gemmNR-1]
			packN32(&ap[jp*gemmNR*r], &a[jp*gemmNR], r, cols)
		}
	})
	// The coefficients of the whole strips, packed as packX packs x: one
	// run of r steps (r may exceed gemmKC: packX's runs are not used).
	xb := getGemmBuf(strips * gemmMR * r)
	defer gemmPool.Put(xb)
	xp := *xb
	for s := range strips {
		packPanel(xp[s*gemmMR*r:(s+1)*gemmMR*r], gemmMR, gemmMR, r, func(i int) []float32 {
			return cb[(s*gemmMR+i)*r : (s*gemmMR+i+1)*r]
		})
	}
	m := panels * gemmNR // the columns of whole blocks
	Parallel(strips, rows*cols*r, func(lo, hi int) {
		for s := lo; s < hi; s++ {
			i0 := s * gemmMR
			for jp := range panels {
				gemmKernelAVX512(r, &xp[s*gemmMR*r], &ap[jp*gemmNR*r], &dst[i0*cols+jp*gemmNR], cols, 1)
			}
			if m < cols {
				for i := i0; i < i0+gemmMR; i++ {
					rankRow(dst[i*cols+m:(i+1)*cols], a[m:], cb[i*r:(i+1)*r], cols)
				}
			}
		}
	})
	// The rows past the last whole strip.
	Parallel(rows-strips*gemmMR, (rows-strips*gemmMR)*cols*r, func(lo, hi int) {
		for i := strips*gemmMR + lo; i < strips*gemmMR+hi; i++ {
			rankRow(dst[i*cols:(i+1)*cols], a, cb[i*r:(i+1)*r], cols)
		}
	})
}

// RankFinite reports whether every element of W + c·B·A, computed exactly
// as RankUpdate computes it, is below lim in magnitude in float32: for a
// half W, lim is the dtype's overflow threshold, the smallest float32 that
// rounds to ±Inf; NaN fails. W is not modified: its rows are copied
// (widened), a block of about 4 MiB at a time, and updated by the same
// blocked loop as RankUpdate's, whose float32 result for an element depends
// neither on the range of rows given nor on the split among goroutines.
func RankFinite(w Mat, a, b []float32, r int, c, lim float32) bool {
	out, in := w.Rows, w.Cols
	coef, pack := adapterUpdate(a, b, in, r, c)
	chunk := max(1, min(out, (1<<20)/in))
	tmp := make([]float32, chunk*in)
	for i0 := 0; i0 < out; i0 += chunk {
		i1 := min(out, i0+chunk)
		t := tmp[:(i1-i0)*in]
		widenParallel(&w, t, i0*in)
		rankUpdateF32(t, i1-i0, in, r, func(i int, c []float32) { coef(i0+i, c) }, pack)
		if !fitsIn(t, lim) {
			return false
		}
	}
	return true
}

// fitsIn reports whether every element of s is below lim in magnitude,
// which NaN fails.
func fitsIn(s []float32, lim float32) bool {
	for _, v := range s {
		if !(v < lim && v > -lim) {
			return false
		}
	}
	return true
}
