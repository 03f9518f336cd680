package cpu

import "sync"

// loraTerm is the adapter's part of Forward, s·(x·Aᵀ)·Bᵀ, done by the
// goroutines of the base product instead of in passes of its own (and
// Backward's dx += U·A the same way, newGradXTerm):
//
//	T = s·x·Aᵀ (n×r): up to loraFusedTRows rows of x, each goroutine
//	  computes, before its first block, its share of T's groups of four
//	  columns (rows of A) by the fused matrix-vector kernels (gemvOp, which
//	  sums in the same order whatever the split), scaled once whole;
//	  otherwise (many rows of x, where the packed product is faster)
//	  Shrink computes T first;
//	y += T·Bᵀ: once the product has written a range of y's columns for a
//	  range of rows, the goroutine that wrote it adds T's rows times the
//	  range's columns of Bᵀ (add: on the packed product's micro-kernel,
//	  rankRow's arithmetic: each sum from zero in k order, then added),
//	  while those rows of y are still in its cache.
//
// A separate pass did the same arithmetic over all of y after the product
// (rankUpdateF32): at n = 16, in = out = 4096, r = 16 it took 127 µs and
// Shrink 75 µs, with one core idle for much of both.
//
// For x held as BF16 patterns (ForwardBF16), each goroutine computes
// instead the rows of T of its share of x's rows (widened into its own
// scratch), on the same kernels; past loraFusedTRowsBF16, where the packed
// product serves (gemmSmallWins), T comes first from it on x's patterns
// (widened as it packs them).
type loraTerm struct {
	t, x, a, b []float32
	bt         []float32 // B given transposed (r rows, ldbt apart; b nil): Backward's A for dx
	ldbt       int
	xb         []uint16 // x as BF16 patterns (x nil)
	n, in, r   int
	s          float32
	op         *gemvOp        // T's product, where the goroutines compute it (x float32)
	byRows     bool           // the goroutines compute T's rows (xb)
	ready      sync.WaitGroup // T's groups (rows, byRows) still to compute
}

// loraFusedTRows is the most rows of x for which the product's goroutines
// compute T (loraFusedTRowsBF16 for x held as BF16 patterns, whose
// goroutines widen their rows of x first). Measured on 4096 columns,
// r = 16, one core: the fused kernels take 20, 81 and 384 µs at n = 16,
// 64 and 256 (gemv4x4F32; 31, 120 and 550 on gemv4F32 alone), Shrink 75,
// 89 and 230 µs (on one core below 128 rows). Forward on two cores,
// r = 16, medians of 4, T by the goroutines against Shrink first: in = out
// = 1024, n = 128: 1.04 against 1.16 ms, n = 256: 1.83 against 1.89 ms
// (Shrink then at 80 µs on two cores, its packing of x most of it);
// 4096, n = 128: 15.0 against 15.2 ms, n = 256: 26.9 against 27.1 ms;
// above, n = 512 and 1024, about the same. ForwardBF16: n = 128 0.35
// against 0.36 ms (1024) and 3.1 against 3.2 ms (4096), but n = 256 0.61
// against 0.60 and 5.5 against 5.3 ms.
const (
	loraFusedTRows     = 256
	loraFusedTRowsBF16 = 128
)

// loraTermSlab is the most columns of y a goroutine gathers before adding
// their term (the slab of Bᵀ for them, r rows of it, stays in L1 or L2).
const loraTermSlab = 256

// newLoRATerm returns the term for Forward's arguments, T (n×r) written
// into t: now by Shrink, or later by the product's goroutines (start).
func newLoRATerm(t, x, a, b []float32, n, in, r int, s float32) *loraTerm {
	lt := &loraTerm{t: t, x: x, a: a, b: b, n: n, in: in, r: r, s: s}
	if n > loraFusedTRows {
		Shrink(t, x, a, n, in, r, s)
		return lt
	}
	lt.op = f32GemvOp(t, x, a, n, r, in, r)
	lt.ready.Add(lt.groups())
	return lt
}

// newGradXTerm returns the term dx += U·A of Backward (U n×r, complete;
// A r×in), in loraTerm's terms: T = U and B = Aᵀ, given as A.
func newGradXTerm(u, a []float32, n, in, r int) *loraTerm {
	return &loraTerm{t: u, bt: a, ldbt: in, n: n, in: in, r: r}
}

// newLoRATermBF16 is newLoRATerm for x held as BF16 patterns.
func newLoRATermBF16(t []float32, x []uint16, a, b []float32, n, in, r int, s float32) *loraTerm {
	lt := &loraTerm{t: t, xb: x, a: a, b: b, n: n, in: in, r: r, s: s}
	if n > loraFusedTRowsBF16 && gemmSmallWins(n, in, gemmNR) {
		// As Shrink, x's rows widened as they are packed.
		shrinkPacked(t, &Mat{Rows: n, Cols: in, Type: BF16, Bits: x}, a, r, s)
		return lt
	}
	lt.byRows = true
	lt.ready.Add(n)
	return lt
}

// groups returns the groups of four columns of T.
func (lt *loraTerm) groups() int { return (lt.r + 3) / 4 }

// start computes, where T is the goroutines', the share of T's groups of
// the goroutine that does units [lo, hi) of the product's units: the
// shares of goroutines whose units partition [0, units) partition T's
// groups.
func (lt *loraTerm) start(lo, hi, units int) {
	if lt == nil {
		return
	}
	if lt.byRows {
		lt.startRows(lo*lt.n/units, hi*lt.n/units)
		return
	}
	if lt.op == nil {
		return
	}
	g := lt.groups()
	g0, g1 := lo*g/units, hi*g/units
	if g1 == g0 {
		return
	}
	lt.op.groups(g0, g1)
	k0, k1 := 4*g0, min(lt.r, 4*g1)
	for i := range lt.n {
		for k := k0; k < k1; k++ {
			lt.t[i*lt.r+k] *= lt.s
		}
	}
	lt.ready.Add(g0 - g1)
}

// startRows computes T's rows [i0, i1) from x's BF16 patterns: widened
// into scratch, then by the fused matrix-vector kernels (whose sums do not
// depend on the rows computed with them).
func (lt *loraTerm) startRows(i0, i1 int) {
	if i1 <= i0 {
		return
	}
	in, r := lt.in, lt.r
	buf := getGemmBuf((i1 - i0) * in)
	defer gemmPool.Put(buf)
	xs := (*buf)[:(i1-i0)*in]
	widenHalf(BF16, xs, lt.xb[i0*in:i1*in])
	t := lt.t[i0*r : i1*r]
	f32GemvOp(t, xs, lt.a, i1-i0, r, in, r).groups(0, lt.groups())
	for i := range t {
		t[i] *= lt.s
	}
	lt.ready.Add(i0 - i1)
}

// loraTermRows is the most rows of T that add packs at a time.
const loraTermRows = 128

// slabLen returns the floats of the scratch add needs for o1 − o0 ≤
// maxCols columns (none for a nil term).
func (lt *loraTerm) slabLen(maxCols int) int {
	if lt == nil {
		return 0
	}
	return lt.r*(maxCols+gemmNR) + lt.r*loraTermRows
}

// add adds T[i,:]·B[o,:] to the element (i, o) of y, at yt[(i−i0)·ldt +
// o − o0], for i0 ≤ i < i1 and o0 ≤ o < o1, once T is complete, through
// slab (at least slabLen(o1 − o0) floats): each sum formed whole from zero
// in k order, then added (rankRow's arithmetic). Where the processor has
// the packed product's micro-kernel, B's rows are packed as its panels of
// W (Bᵀ, packT32 where r is a multiple of 16) and T's rows as its panels
// of x, and each 8×32 block of y is one call over all r steps; otherwise
// by rankRow on Bᵀ.
func (lt *loraTerm) add(yt []float32, ldt, i0, i1, o0, o1 int, slab []float32) {
	if lt == nil || i0 >= i1 || o0 >= o1 {
		return
	}
	lt.ready.Wait()
	r, width := lt.r, o1-o0
	if !useGemm512 {
		bt, ld := lt.bt[min(len(lt.bt), o0):], lt.ldbt
		if lt.bt == nil {
			bt, ld = slab[:r*width], width
			transposeRows(bt, lt.b[o0*r:o1*r], 0, width, width, r)
		}
		for i := i0; i < i1; i++ {
			rankRow(yt[(i-i0)*ldt:(i-i0)*ldt+width], bt, lt.t[i*r:(i+1)*r], ld)
		}
		return
	}
	// Bᵀ's panels: panel q holds columns o0 + 32q… of y, r steps of 32:
	// from B's rows by packT32 where r is a multiple of 16, from the rows
	// of a given Bᵀ by packN32.
	panels := (width + gemmNR - 1) / gemmNR
	bt := slab[:panels*r*gemmNR]
	for q := range panels {
		o := o0 + q*gemmNR
		d := bt[q*r*gemmNR : (q+1)*r*gemmNR]
		switch cols := min(gemmNR, o1-o); {
		case lt.bt != nil && cols == gemmNR:
			packN32(&d[0], &lt.bt[o], r, lt.ldbt)
		case lt.bt != nil:
			for k := range r {
				e := d[k*gemmNR : (k+1)*gemmNR]
				clear(e[copy(e[:cols], lt.bt[k*lt.ldbt+o:]):])
			}
		case cols == gemmNR && r%16 == 0:
			packT32(&d[0], &lt.b[o*r], r, r)
		default:
			packPanel(d, gemmNR, cols, r, func(i int) []float32 { return lt.b[(o+i)*r : (o+i+1)*r] })
		}
	}
	tp := slab[panels*r*gemmNR:]
	var tile [gemmMR * gemmNR]float32
	for c0 := i0; c0 < i1; c0 += loraTermRows {
		c1 := min(i1, c0+loraTermRows)
		// T's rows c0… as panels of gemmMR rows, each step gemmMR values,
		// zero past row c1.
		for ir := c0; ir < c1; ir += gemmMR {
			d := tp[(ir-c0)*r : (ir-c0+gemmMR)*r]
			for i := range gemmMR {
				if ir+i >= c1 {
					for p := range r {
						d[p*gemmMR+i] = 0
					}
					continue
				}
				for p, v := range lt.t[(ir+i)*r : (ir+i+1)*r] {
					d[p*gemmMR+i] = v
				}
			}
		}
		for ir := c0; ir < c1; ir += gemmMR {
			a := &tp[(ir-c0)*r]
			rows := min(gemmMR, c1-ir)
			for q := range panels {
				at := (ir-i0)*ldt + q*gemmNR // element (ir, o0 + 32q)
				b := &bt[q*r*gemmNR]
				cols := min(gemmNR, width-q*gemmNR)
				if rows == gemmMR && cols == gemmNR {
					gemmKernelAVX512(r, a, b, &yt[at], ldt, 1)
					continue
				}
				for i := range rows {
					copy(tile[i*gemmNR:i*gemmNR+cols], yt[at+i*ldt:])
				}
				gemmKernelAVX512(r, a, b, &tile[0], gemmNR, 1)
				for i := range rows {
					copy(yt[at+i*ldt:at+i*ldt+cols], tile[i*gemmNR:])
				}
			}
		}
	}
}
