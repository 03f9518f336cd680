package cpu

import (
	"math"
	"math/bits"
)

// NF4, bitsandbytes' 4-bit NormalFloat: an element is a 4-bit code k, two
// a byte (the element of even flat index in the high nibble), and its value
// is NF4Table[k] · absmax[block], one float32 rounding, block being its flat
// index divided by the block size.

// NF4Table is bitsandbytes' NF4 table, as float32: the quantiles of a
// normal distribution scaled to [−1, 1], with an exact 0 (code 7).
var NF4Table = [16]float32{
	-1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453,
	-0.28444138169288635, -0.18477343022823334, -0.09105003625154495, 0.0,
	0.07958029955625534, 0.16093020141124725, 0.24611230850220184, 0.33791524171829224,
	0.44070982260894775, 0.5626170039176941, 0.7229568362236023, 1.0,
}

// nf4Bounds are the midpoints (NF4Table[i] + NF4Table[i+1]) / 2, each
// rounded to float32, that QuantizeNF4 compares a scaled value with.
var nf4Bounds = func() (b [15]float32) {
	for i := range b {
		b[i] = (NF4Table[i] + NF4Table[i+1]) / 2
	}
	return b
}()

// nf4Code returns the code of a scaled value v in [−1, 1]: the number of
// midpoints strictly below v (torch.bucketize with right=False), so that a
// value exactly on a midpoint takes the lower code.
func nf4Code(v float32) byte {
	k := byte(0)
	for _, b := range nf4Bounds {
		if b < v {
			k++
		}
	}
	return k
}

// QuantizeNF4 quantizes src (n elements, row-major) into codes
// (ceil(n/2) bytes) and absmax (ceil(n/block) scales) exactly as
// bitsandbytes' default backend does: for each full block, absmax =
// max|x| (stored as it is, 0 included) and the scaled value
// clamp(x · (1/max(absmax, 1e-38)), −1, 1), the reciprocal and the product
// each rounded to float32; for a short last block, x / am with
// am = max(max|x|, 1e-38), which is also what is stored. An odd count pads
// the last low nibble with code 7 (0.0). src must be finite. Blocks are
// split among goroutines.
func QuantizeNF4(codes []byte, absmax []float32, src []float32, block int) {
	n := len(src)
	blocks := (n + block - 1) / block
	// block is even (a power of two, at least 32): no two blocks share a byte.
	Parallel(blocks, 4*n, func(lo, hi int) {
		for b := lo; b < hi; b++ {
			j0, j1 := b*block, min(n, (b+1)*block)
			var am float32
			for _, v := range src[j0:j1] {
				am = max(am, float32(math.Abs(float64(v))))
			}
			full := j1-j0 == block
			var inv float32
			if full {
				absmax[b] = am
				inv = 1 / max(am, 1e-38)
			} else {
				am = max(am, 1e-38)
				absmax[b] = am
			}
			for j := j0; j < j1; j++ {
				var s float32
				if full {
					s = src[j] * inv
				} else {
					s = src[j] / am
				}
				s = min(max(s, -1), 1)
				setNibble(codes, j, nf4Code(s))
			}
		}
	})
	if n%2 == 1 {
		setNibble(codes, n, 7)
	}
}

// setNibble sets the code of flat index j.
func setNibble(codes []byte, j int, k byte) {
	if j%2 == 0 {
		codes[j/2] = codes[j/2]&0x0f | k<<4
	} else {
		codes[j/2] = codes[j/2]&0xf0 | k
	}
}

// DequantizeNF4 writes into dst the values of the len(dst) NF4 elements
// from flat index flat0 on: NF4Table[code] · absmax[block], one float32
// rounding each. Where the processor has the kernel and block is a power
// of two, the elements from the first multiple of 32 on, in whole 32s, go
// through dequantNF4; the few before and after through nf4Value.
func DequantizeNF4(dst []float32, codes []byte, absmax []float32, block, flat0 int) {
	if useNF4FMA && block >= 32 && block&(block-1) == 0 {
		head := min(len(dst), -flat0&31)
		nf4Values(dst[:head], codes, absmax, block, flat0)
		if body := (len(dst) - head) &^ 31; body > 0 {
			end := flat0 + head + body
			_, _ = codes[(end-1)/2], absmax[(end-1)/block] // the kernel reads within
			dequantNF4(&dst[head], &codes[0], &absmax[0], body, flat0+head, bits.TrailingZeros(uint(block)))
			head += body
		}
		dst, flat0 = dst[head:], flat0+head
	}
	nf4Values(dst, codes, absmax, block, flat0)
}

// nf4Values is DequantizeNF4 element by element.
func nf4Values(dst []float32, codes []byte, absmax []float32, block, flat0 int) {
	for i := range dst {
		j := flat0 + i
		dst[i] = nf4Value(codes, absmax, j, j/block)
	}
}

// nf4Value returns the value of the element of flat index j, in block b:
// NF4Table[code] · absmax[b], rounded once.
func nf4Value(codes []byte, absmax []float32, j, b int) float32 {
	c := codes[j/2]
	if j%2 == 0 {
		c >>= 4
	}
	return float32(NF4Table[c&15] * absmax[b])
}

// y = x·Wᵀ for an NF4 W: at n ≤ nf4GemvRows(), where its rows are whole
// blocks and the processor has gemv4NF4, by the fused matrix-vector driver
// (gemvFused) on that kernel (gemv4NF4AVX512 where the processor has
// AVX-512), the values formed in registers, four rows of W per pass and
// groups of rows split among goroutines; otherwise by panels of W's rows
// dequantized into float32 (dequantNF4, in L2) and multiplied by the fused
// float32 kernel or Sgemm (panelProduct).

// nf4GemvRows returns the largest batch whose product with an NF4 W takes
// the fused NF4 kernel, which forms W's values again for every row of x:
// above it, dequantizing a panel once and running the float32 kernel on
// it costs less. Measured (BenchmarkNF4Paths, 4096×4096, blocks of 64, 2
// cores): gemv4NF4AVX512 wins up to n = 4 (1.4 against 1.9 ms there) and
// loses at 16 (5.4 against 4.8 ms); gemv4NF4 wins at n = 1 (0.70 against
// 1.1 ms), runs even at 2 (1.33 against 1.40 ms) and loses at 3.
func nf4GemvRows() int {
	if useNF4AVX512 {
		return gemvRows
	}
	return 2
}

// nf4BlockCols is the columns of an NF4 W in one block of gemvFused
// (gemvBlockBytes of codes for four rows): a multiple of every block size.
const nf4BlockCols = 2 * gemvBlockBytes / 4

// nf4Product computes y = x·Wᵀ for x (n×in), an NF4 W (out×in) and y
// (n×out).
func nf4Product(y, x []float32, w Mat, n int) {
	if n <= nf4GemvRows() && nf4Fused(w) {
		nf4Gemv(y, x, w, n)
		return
	}
	panelProduct(y, x, w, n)
}

// nf4Fused reports whether gemv4NF4 runs on w: the processor has it, the
// block is a power of two of at least 32 (as every NF4 W's is) and each row
// of W is whole blocks.
func nf4Fused(w Mat) bool {
	return useNF4FMA && w.Block >= 32 && w.Block&(w.Block-1) == 0 && w.Cols%w.Block == 0
}

// nf4Gemv computes y = x·Wᵀ for an NF4 W by gemvFused on gemv4NF4AVX512
// where the processor has AVX-512, gemv4NF4 otherwise, where nf4Fused
// holds; by matGemvGo otherwise.
func nf4Gemv(y, x []float32, w Mat, n int) { nf4GemvBy(y, x, w, n, useNF4AVX512) }

// nf4GemvBy is nf4Gemv on gemv4NF4AVX512 (x in evenOdd order of 32) when
// avx512, on gemv4NF4 (x in evenOdd order of 8) otherwise.
func nf4GemvBy(y, x []float32, w Mat, n int, avx512 bool) {
	op, release := nf4GemvOp(y, x, w, n, avx512)
	defer release()
	gemvFused(op)
}

// nf4GemvOp returns nf4GemvBy's product as a gemvOp, and the function that
// returns its scratch (x reordered) once the product is done.
func nf4GemvOp(y, x []float32, w Mat, n int, avx512 bool) (*gemvOp, func()) {
	out, in, block := w.Rows, w.Cols, w.Block
	op := &gemvOp{y: y, x: x, kx: x, n: n, out: out, in: in, ldy: out, kb: nf4BlockCols,
		value: func(o, j int) float32 { return nf4Value(w.Codes, w.Absmax, o*in+j, (o*in+j)/block) },
		slow:  func(i0, i1, o0, o1 int) { matGemvGo(y, x, &w, i0, i1, out, o0, o1) }}
	release := func() {}
	if nf4Fused(w) && n*in > 0 {
		kern, width := gemv4NF4, 8
		if avx512 {
			kern, width = gemv4NF4AVX512, 32
		}
		p := getPanel(n * in)
		release = func() { panelPool.Put(p) }
		op.kx = *p
		evenOdd(op.kx, x, n, in, width)
		op.kern = func(s, x *float32, o, j, cols int) {
			f0, f1 := o*in+j, (o+3)*in+j+cols // W's elements the kernel reads
			kern(s, x, &w.Codes[f0/2 : (f1+1)/2][0], &w.Absmax[f0/block : (f1-1)/block+1][0], cols, in, block)
		}
	}
	return op, release
}

// NF4Beyond returns the index and value of the first of the n NF4 elements
// (codes, absmax, block) whose magnitude is lim or more, or −1 when there
// is none.
func NF4Beyond(codes []byte, absmax []float32, block, n int, lim float32) (int, float32) {
	var buf [256]float32
	for j0 := 0; j0 < n; j0 += len(buf) {
		t := buf[:min(len(buf), n-j0)]
		DequantizeNF4(t, codes, absmax, block, j0)
		for i, v := range t {
			if !(v < lim && v > -lim) {
				return j0 + i, v
			}
		}
	}
	return -1, 0
}

// Dequantize writes the values of the NF4 matrix src into dst (F32, F16 or
// BF16, the same shape), each rounded once to dst's type; chunks of
// elements are split among goroutines.
func Dequantize(dst, src Mat) {
	n := src.Rows * src.Cols
	const part = 1 << 14
	parts := (n + part - 1) / part
	Parallel(parts, 4*n, func(lo, hi int) {
		var buf [part]float32
		for p := lo; p < hi; p++ {
			j0, j1 := p*part, min(n, (p+1)*part)
			if dst.Type == F32 {
				DequantizeNF4(dst.F32[j0:j1], src.Codes, src.Absmax, src.Block, j0)
				continue
			}
			t := buf[:j1-j0]
			DequantizeNF4(t, src.Codes, src.Absmax, src.Block, j0)
			narrowHalf(dst.Type, dst.Bits[j0:j1], t)
		}
	})
}
