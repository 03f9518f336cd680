//go:build !amd64 || purego

package cpu

import "unsafe"

// packT32 sets dst[p·32+i] = src[i·ld+p] for i < 32 and p < kc, kc a
// positive multiple of 16: the portable form of the amd64 kernel.
func packT32(dst, src *float32, kc, ld int) {
	d, s := f32s(dst, kc*32), f32s(src, 31*ld+kc)
	for i := range 32 {
		for p := range kc {
			d[p*32+i] = s[i*ld+p]
		}
	}
}

// packT16 sets dst[p·16+i] = src[i·ld+p] for i < 16 and p < 16·k16: the
// portable form of the amd64 kernel, moving the 32-bit patterns as they
// are (pairs of BF16 patterns, not float32 values).
func packT16(dst, src *float32, k16, ld int) {
	d := unsafe.Slice((*uint32)(unsafe.Pointer(dst)), 256*k16)
	s := unsafe.Slice((*uint32)(unsafe.Pointer(src)), 15*ld+16*k16)
	for i := range 16 {
		for p := range 16 * k16 {
			d[p*16+i] = s[i*ld+p]
		}
	}
}

// packT8 sets dst[p·8+i] = src[i·ld+p] for i < 8 and p < 8·k8: the
// portable form of the amd64 kernel.
func packT8(dst, src *float32, k8, ld int) {
	d, s := f32s(dst, 64*k8), f32s(src, 7*ld+8*k8)
	for i := range 8 {
		for p := range 8 * k8 {
			d[p*8+i] = s[i*ld+p]
		}
	}
}

// packT6 sets dst[p·6+i] = src[i·ld+p] for i < 6 and p < 8·k8: the
// portable form of the amd64 kernel.
func packT6(dst, src *float32, k8, ld int) {
	d, s := f32s(dst, 48*k8), f32s(src, 5*ld+8*k8)
	for i := range 6 {
		for p := range 8 * k8 {
			d[p*6+i] = s[i*ld+p]
		}
	}
}

// packT32BF16 is packT32 for a bfloat16 src, each element widened exactly.
func packT32BF16(dst *float32, src *uint16, kc, ld int) { packT32Half(BF16, dst, src, kc, ld) }

// packT32F16 is packT32 for a float16 src, each element widened exactly.
func packT32F16(dst *float32, src *uint16, kc, ld int) { packT32Half(F16, dst, src, kc, ld) }

func packT32Half(dt Type, dst *float32, src *uint16, kc, ld int) {
	d, s := f32s(dst, kc*32), unsafe.Slice(src, 31*ld+kc)
	for i := range 32 {
		for p := range kc {
			d[p*32+i] = widen1(dt, s[i*ld+p])
		}
	}
}

// packN32 sets dst[p·32+i] = src[p·ld+i] for i < 32 and p < kc, kc ≥ 1.
func packN32(dst, src *float32, kc, ld int) {
	d, s := f32s(dst, kc*32), f32s(src, (kc-1)*ld+32)
	for p := range kc {
		copy(d[p*32:(p+1)*32], s[p*ld:p*ld+32])
	}
}

// packN32BF16 is packN32 for a bfloat16 src, each element widened exactly.
func packN32BF16(dst *float32, src *uint16, kc, ld int) { packN32Half(BF16, dst, src, kc, ld) }

// packN32F16 is packN32 for a float16 src, each element widened exactly.
func packN32F16(dst *float32, src *uint16, kc, ld int) { packN32Half(F16, dst, src, kc, ld) }

func packN32Half(dt Type, dst *float32, src *uint16, kc, ld int) {
	d, s := f32s(dst, kc*32), unsafe.Slice(src, (kc-1)*ld+32)
	for p := range kc {
		for i := range 32 {
			d[p*32+i] = widen1(dt, s[p*ld+i])
		}
	}
}

// prefetchRows does nothing here: a hint that only the amd64 kernels act on.
func prefetchRows(p uintptr, rows, stride, bytes int) {}

// gemmKernelPF is gemmKernelAVX512 on b's steps ldb floats apart, copied
// into a packed panel first: the prefetches are only a hint.
func gemmKernelPF(k int, a, b, c *float32, ldc, acc int, pf uintptr, lines, rowBytes, stride, ldb int) {
	if ldb == gemmNR {
		gemmKernelAVX512(k, a, b, c, ldc, acc)
		return
	}
	src, p := f32s(b, (k-1)*ldb+gemmNR), make([]float32, k*gemmNR)
	for s := range k {
		copy(p[s*gemmNR:(s+1)*gemmNR], src[s*ldb:])
	}
	gemmKernelAVX512(k, a, &p[0], c, ldc, acc)
}

// gemmKernel6x64 is the amd64 kernel's arithmetic as a loop (each sum in
// p order, then the old value added); the prefetches are only a hint.
func gemmKernel6x64(k int, a, b, c *float32, ldc, acc int, pf uintptr, lines, rowBytes, stride, ldb, b2 int) {
	gemmKernel6Go(k, a, b, c, ldc, acc, ldb, b2, 2*gemmNR)
}

// gemmKernel6x32 is gemmKernel6x64 on columns j < 32 alone.
func gemmKernel6x32(k int, a, b, c *float32, ldc, acc int, pf uintptr, lines, rowBytes, stride, ldb, b2 int) {
	gemmKernel6Go(k, a, b, c, ldc, acc, ldb, 0, gemmNR)
}

// gemmKernelW6x64 is gemmKernel6x64 with a's six rows where they lie, lda
// floats apart: packed as a panel, then the same loop.
func gemmKernelW6x64(k int, a *float32, lda int, b, c *float32, ldc, acc, b2 int) {
	as := f32s(a, 5*lda+k)
	a6 := make([]float32, 6*k)
	for i := range 6 {
		for p := range k {
			a6[p*6+i] = as[i*lda+p]
		}
	}
	gemmKernel6Go(k, &a6[0], b, c, ldc, acc, gemmNR, b2, 2*gemmNR)
}

// gemmKernel6Go is the loop of gemmKernel6x64 (cols 64) and gemmKernel6x32
// (cols 32).
func gemmKernel6Go(k int, a, b, c *float32, ldc, acc, ldb, b2, cols int) {
	as, cs := f32s(a, k*6), f32s(c, 5*ldc+cols)
	bs := f32s(b, (k-1)*ldb+max(gemmNR, b2/4+cols-gemmNR))
	for i := range 6 {
		for j := range cols {
			off := j
			if j >= gemmNR {
				off = b2/4 + j - gemmNR
			}
			var s float32
			for p := range k {
				s += as[p*6+i] * bs[p*ldb+off]
			}
			if acc != 0 {
				s += cs[i*ldc+j]
			}
			cs[i*ldc+j] = s
		}
	}
}
