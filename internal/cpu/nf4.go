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
