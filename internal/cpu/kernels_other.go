//go:build !amd64 || purego

package cpu

import "unsafe"

// Without the amd64 assembly the dispatch takes the portable drivers
// (useFMA and the others are false). The kernels below are the loops that
// kernels_amd64.go declares, run by this package's tests against the same
// references as the assembly.
const (
	useFMA     = false
	useBF16FMA = false
	useF16FMA  = false
	useNF4FMA  = false

	useNF4AVX512 = false
	useGemm512   = false
	halfAVX2     = false
)

// machineLevel is Generic: there is no assembly.
func machineLevel() Level { return Generic }

// setLevel does nothing: every level runs the portable loops.
func setLevel(l Level) Level { return l }

// portableKernels is true: the kernels below run on any processor.
const portableKernels = true

func f32s(p *float32, n int) []float32 { return unsafe.Slice(p, n) }
func u16s(p *uint16, n int) []uint16   { return unsafe.Slice(p, n) }
func bytesOf(p *byte, n int) []byte    { return unsafe.Slice(p, n) }

func gemv4F32(y, x, w *float32, n, ldw int) {
	gemv4Loop(f32s(y, 4), f32s(x, n), f32s(w, 3*ldw+n), n, ldw, func(v float32) float32 { return v })
}

func gemv4x4F32(y, x *float32, ldx int, w *float32, n, ldw int) {
	ys := f32s(y, 16)
	for p := range 4 {
		gemv4F32(&ys[4*p], &f32s(x, 3*ldx+n)[p*ldx], w, n, ldw)
	}
}

func gemv4BF16(y, x *float32, w *uint16, n, ldw int) {
	// x is in pair order: within each block of 16, column 2k is at k and
	// column 2k+1 at 8+k.
	xs, ws, ys := f32s(x, n), u16s(w, 3*ldw+n), f32s(y, 4)
	for q := range 4 {
		var s float32
		for j := range n {
			b, k := j&^15, j&15
			xj := xs[b+k/2+8*(k&1)]
			s += xj * widen1(BF16, ws[q*ldw+j])
		}
		ys[q] = s
	}
}

func gemv4F16(y, x *float32, w *uint16, n, ldw int) {
	gemv4Loop(f32s(y, 4), f32s(x, n), u16s(w, 3*ldw+n), n, ldw, func(v uint16) float32 { return widen1(F16, v) })
}

func gemv4Loop[E float32 | uint16](y, x []float32, w []E, n, ldw int, value func(E) float32) {
	for q := range 4 {
		var s float32
		for j := range n {
			s += x[j] * value(w[q*ldw+j])
		}
		y[q] = s
	}
}

func rankRowFMA(dst, a, coef *float32, n, r, lda int) {
	rankRowLoop(f32s(dst, n), f32s(a, (r-1)*lda+n), f32s(coef, r), lda, func(v float32) float32 { return v })
}

func rankRowFromBF16(dst *float32, a *uint16, coef *float32, n, r, lda int) {
	rankRowLoop(f32s(dst, n), u16s(a, (r-1)*lda+n), f32s(coef, r), lda, func(v uint16) float32 { return widen1(BF16, v) })
}

func rankRowFromF16(dst *float32, a *uint16, coef *float32, n, r, lda int) {
	rankRowLoop(f32s(dst, n), u16s(a, (r-1)*lda+n), f32s(coef, r), lda, func(v uint16) float32 { return widen1(F16, v) })
}

func rankRowBF16(dst *uint16, a, coef *float32, n, r, lda int) {
	rankRowNarrow(BF16, dst, a, coef, n, r, lda)
}
func rankRowF16(dst *uint16, a, coef *float32, n, r, lda int) {
	rankRowNarrow(F16, dst, a, coef, n, r, lda)
}

// rankRowLoop sets dst[j] += Σₖ coef[k]·a[k·lda+j], each sum accumulated
// from zero in k order and then added.
func rankRowLoop[E float32 | uint16](dst []float32, a []E, coef []float32, lda int, value func(E) float32) {
	for j := range dst {
		var d float32
		for k, c := range coef {
			d += c * value(a[k*lda+j])
		}
		dst[j] += d
	}
}

// rankRowNarrow is rankRowLoop on dst widened, rounded back to dt.
func rankRowNarrow(dt Type, dst *uint16, a, coef *float32, n, r, lda int) {
	ds := u16s(dst, n)
	t := make([]float32, n)
	widenHalf(dt, t, ds)
	rankRowLoop(t, f32s(a, (r-1)*lda+n), f32s(coef, r), lda, func(v float32) float32 { return v })
	narrowHalf(dt, ds, t)
}

func maxMag16(src *uint16, n int) uint16 {
	var mx uint16
	for _, v := range u16s(src, n) {
		mx = max(mx, v&0x7fff)
	}
	return mx
}

func maxMag32(src *uint32, n int) uint32 {
	var mx uint32
	for _, v := range unsafe.Slice(src, n) {
		mx = max(mx, v&0x7fffffff)
	}
	return mx
}

func dequantNF4(dst *float32, codes *byte, absmax *float32, n, flat0, shift int) {
	end := flat0 + n
	cs, as := bytesOf(codes, (end+1)/2), f32s(absmax, (end-1)>>shift+1)
	for i, d := 0, f32s(dst, n); i < n; i++ {
		d[i] = nf4Value(cs, as, flat0+i, (flat0+i)>>shift)
	}
}

func gemv4NF4(y, x *float32, codes *byte, absmax *float32, n, ldw, block int) {
	nf4GemvLoop(y, x, codes, absmax, n, ldw, block, 8)
}

func gemv4NF4AVX512(y, x *float32, codes *byte, absmax *float32, n, ldw, block int) {
	nf4GemvLoop(y, x, codes, absmax, n, ldw, block, 32)
}

// nf4GemvLoop is gemv4NF4 with x in evenOdd order of width: within each
// block of width columns, column 2k is at k and column 2k+1 at width/2+k.
func nf4GemvLoop(y, x *float32, codes *byte, absmax *float32, n, ldw, block, width int) {
	cs, as := bytesOf(codes, (3*ldw+n)/2), f32s(absmax, (3*ldw+n)/block)
	xs, ys := f32s(x, n), f32s(y, 4)
	for q := range 4 {
		var s float32
		for j := range n {
			b, k := j-j%width, j%width
			s += xs[b+k/2+width/2*(k&1)] * nf4Value(cs, as, q*ldw+j, (q*ldw+j)/block)
		}
		ys[q] = s
	}
}

func gemmKernelAVX512(k int, a, b, c *float32, ldc, acc int) {
	as, bs := f32s(a, k*gemmMR), f32s(b, k*gemmNR)
	cs := f32s(c, (gemmMR-1)*ldc+gemmNR)
	for i := range gemmMR {
		for j := range gemmNR {
			var s float32
			for p := range k {
				s += as[p*gemmMR+i] * bs[p*gemmNR+j]
			}
			if acc != 0 {
				s += cs[i*ldc+j]
			}
			cs[i*ldc+j] = s
		}
	}
}

// adamw8 is adamwGo on n8·8 elements.
func adamw8(p, grad, m, v *float32, n8 int, c *[8]float32) {
	adamwGo(f32s(p, 8*n8), f32s(grad, 8*n8), f32s(m, 8*n8), f32s(v, 8*n8), c)
}
