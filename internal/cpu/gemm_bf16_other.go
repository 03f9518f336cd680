//go:build !amd64 || purego

package cpu

import "math"

// Without the amd64 assembly there are no bf16 instructions: the bf16
// product does not run. The kernels are bf16TilesGo, for the tests.
const (
	useBF16DP = false
	useAMX    = false
)

func dpbf16Tiles(a *uint16, lda int, b *uint16, ldb int, c *float32, mt, nt, k32, acc int) {
	bf16TilesPtr(a, lda, b, ldb, c, mt, nt, k32, acc)
}

func dpbf16TilesPF(a *uint16, lda int, b *uint16, ldb int, c *float32, mt, nt, k32, acc int, pf, pfEnd uintptr, rowBytes, stride int) {
	bf16TilesPtr(a, lda, b, ldb, c, mt, nt, k32, acc)
}

func amxTiles(a *uint16, lda int, b *uint16, ldb int, c *float32, mt, nt, k32, acc int) {
	bf16TilesPtr(a, lda, b, ldb, c, mt, nt, k32, acc)
}

func amxTilesPF(a *uint16, lda int, b *uint16, ldb int, c *float32, mt, nt, k32, acc int, pf, pfEnd uintptr, rowBytes, stride int) {
	bf16TilesPtr(a, lda, b, ldb, c, mt, nt, k32, acc)
}

func amxTilesW(a *uint16, ldw int, b *uint16, ldb int, c *float32, mt, nt, k32, acc int, pf, pfEnd uintptr, rowBytes, stride int, scan bool) uint16 {
	w := u16s(a, (16*mt-1)*ldw+32*k32)
	t := make([]uint16, mt*k32*512)
	for ti := range mt {
		for s := range k32 {
			for o := range 16 {
				copy(t[(ti*k32+s)*512+32*o:][:32], w[(16*ti+o)*ldw+32*s:])
			}
		}
	}
	bf16TilesPtr(&t[0], k32*512, b, ldb, c, mt, nt, k32, acc)
	if !scan {
		return 0
	}
	return minMag16(&t[0], len(t))
}

func bf16TilesPtr(a *uint16, lda int, b *uint16, ldb int, c *float32, mt, nt, k32, acc int) {
	bf16TilesGo(u16s(a, (mt-1)*lda+512*k32), lda, u16s(b, (nt-1)*ldb+512*k32), ldb,
		f32s(c, mt*nt*256), mt, nt, k32, acc != 0)
}

func minMag16(src *uint16, n int) uint16 {
	var mn uint16
	for _, h := range u16s(src, n) {
		if v := h & 0x7fff; v != 0 && (mn == 0 || v < mn) {
			mn = v
		}
	}
	return mn
}

func packTiles16(dst, src *uint16, lds, k32 int) uint16 {
	packTilesGo(u16s(dst, 512*k32), u16s(src, 15*lds+32*k32), lds, k32)
	return minMag16(dst, 512*k32)
}

func transpose16(y *float32, ldy int, c *float32) {
	transposeGo(f32s(y, 15*ldy+16), ldy, f32s(c, 256))
}

func packX16(dst *uint16, x *float32, ldx, k32 int) {
	packXGo(u16s(dst, 512*k32), f32s(x, 15*ldx+32*k32), ldx, 16, 0, 32*k32)
}

func checkX(x *float32, n int) (or, least uint32) {
	least = math.MaxUint32
	for _, v := range f32s(x, n) {
		b := math.Float32bits(v)
		or |= b
		least = min(least, b>>16&0x7fff-1)
	}
	return or, least
}

func packPairsRows(dst *uint16, ldd int, src *uint16, ld, panels int) {
	d, w := u16s(dst, (panels-1)*ldd+32), u16s(src, ld+16*panels)
	for t := range panels {
		for r := range 16 {
			for e := range 2 {
				d[t*ldd+2*r+e] = w[e*ld+16*t+r]
			}
		}
	}
}
