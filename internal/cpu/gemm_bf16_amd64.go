//go:build amd64 && !purego

package cpu

// The kernels of the bf16 product (gemm_bf16.go, gemm_bf16_amd64.s). The
// flags are set by setLevel: useBF16DP at level AVX512BF16 and above (the
// processor has AVX512F, AVX512BW and AVX512_BF16), useAMX at level AMX
// (and AMX-TILE, AMX-BF16, and the operating system's permission to use
// the tiles, amxPermitted).
var (
	useBF16DP bool // VDPBF16PS: dpbf16Tiles; packTiles16, packX16, transpose16, checkX, minMag16
	useAMX    bool // TDPBF16PS: amxTiles
)

// dpbf16Tiles sets, for ti < mt and tj < nt, the 16×16 tile
// c[(ti·nt+tj)·256 + 16·o + r] (o, r < 16) to its old value when acc ≠ 0,
// or zero, plus Σₚ a[ti·lda + (p/16)·512 + 32·o + 2(p%16) + e] ·
// b[tj·ldb + 32p + 2r + e] over the pairs p < 16·k32 and e = 1 then
// e = 0 (bf16TilesGo): row o of a tile is row o of W's tile ti
// (packTiles16's layout, tiles lda elements apart), column r is row r of
// x's panel tj (packXBF16's layout, panels ldb elements apart). k32 ≥ 1;
// VDPBF16PS, so subnormal inputs read as zero and subnormal sums flush to
// zero.
func dpbf16Tiles(a *uint16, lda int, b *uint16, ldb int, c *float32, mt, nt, k32, acc int) {
	dpbf16TilesPF(a, lda, b, ldb, c, mt, nt, k32, acc, 0, 0, 0, 0)
}

// dpbf16TilesPF is dpbf16Tiles with up to four PREFETCHT1s at each of its
// steps (256 VDPBF16PS) of the lines of the rows of rowBytes bytes, stride bytes
// apart, from pf until pfEnd: a part of W that the goroutine packs next,
// fetched into L2 while the tiles compute, as amxTilesPF does. Measured
// (BenchmarkBF16Product, AMD EPYC Zen 4, 2 cores, medians of 4 alternating
// runs, against dpbf16Tiles): n = 16: 2.58 → 2.26 ms; 64: 6.27 → 5.89 ms;
// 256: 21.6 → 21.5 ms.
//
//go:noescape
func dpbf16TilesPF(a *uint16, lda int, b *uint16, ldb int, c *float32, mt, nt, k32, acc int, pf, pfEnd uintptr, rowBytes, stride int)

// amxTiles is dpbf16Tiles on TDPBF16PS, mt even: the same products,
// summed with the instruction's own rounding.
func amxTiles(a *uint16, lda int, b *uint16, ldb int, c *float32, mt, nt, k32, acc int) {
	amxTilesPF(a, lda, b, ldb, c, mt, nt, k32, acc, 0, 0, 0, 0)
}

// amxTilesPF is amxTiles, with up to four PREFETCHT1s at each of its
// steps (each TDPBF16PS pair or quartet) of the lines of the rows of
// rowBytes bytes, stride bytes apart, from pf until pfEnd: a part of W
// that the goroutine packs next, fetched into L2 while the tiles compute.
func amxTilesPF(a *uint16, lda int, b *uint16, ldb int, c *float32, mt, nt, k32, acc int, pf, pfEnd uintptr, rowBytes, stride int) {
	amxKernel(a, 64, 2*lda, 1024, b, ldb, c, mt, nt, k32, acc, pf, pfEnd, rowBytes, stride, 0)
}

// amxTilesW is amxTilesPF with W's tiles read where they lie in W's rows,
// not packed: row o of step s of tile ti is the 32 values at
// a[(16·ti+o)·ldw + 32·s], ldw elements a row of W. When scan, it returns
// the least nonzero magnitude among those values (0 when there is none),
// as minMag16 does: the tiles' rows are read for it by the vector unit
// while the tiles compute, once (with the last panels of x, when they are
// in L1); else 0.
func amxTilesW(a *uint16, ldw int, b *uint16, ldb int, c *float32, mt, nt, k32, acc int, pf, pfEnd uintptr, rowBytes, stride int, scan bool) uint16 {
	return uint16(amxKernel(a, 2*ldw, 32*ldw, 64, b, ldb, c, mt, nt, k32, acc, pf, pfEnd, rowBytes, stride, b2i(scan)) + 1)
}

// amxKernel is the AMX kernel behind amxTilesPF and amxTilesW: W's tiles
// at any strides (bytes), the least (v & 0x7fff) − 1 over them when scan ≠
// 0 (gemm_bf16_amd64.s).
//
//go:noescape
func amxKernel(a *uint16, aStride, aTile, aStep int, b *uint16, ldb int, c *float32, mt, nt, k32, acc int, pf, pfEnd uintptr, rowBytes, stride int, scan int) (least uint32)

// packTiles16 sets dst[s·512 + 32·o + j] = src[o·lds + 32·s + j] for o < 16,
// s < k32, j < 32: one tile of W's rows as the kernels read it; and
// returns the least nonzero magnitude among them (minMag16's). k32 ≥ 1.
// AVX-512 (BW).
//
//go:noescape
func packTiles16(dst, src *uint16, lds, k32 int) uint16

// packX16 sets dst[s·512 + 32p + 2r + e] to the high half of the pattern
// of x[r·ldx + 32s + 2p + e] for r < 16, s < k32, p < 16, e < 2: sixteen
// rows of x as packXBF16 lays them out. k32 ≥ 1.
//
//go:noescape
func packX16(dst *uint16, x *float32, ldx, k32 int)

// packPairsRows sets dst[t·ldd + 2r + e] = src[e·ld + 16t + r] for
// t < panels, r < 16, e < 2: rows e = 0 and 1 of W (ld apart), 16 columns
// for each of panels panels (ldd apart), the two rows' values side by side,
// as one row of each of x's panels that the kernels read (packPairsBF16).
// panels ≥ 1. AVX2.
//
//go:noescape
func packPairsRows(dst *uint16, ldd int, src *uint16, ld, panels int)

// checkX returns the OR of the patterns of x[j] for j < n, and the least
// of ((pattern >> 16) & 0x7fff) − 1 as uint32 (a zero's wraps to the
// largest): n a positive multiple of 16.
//
//go:noescape
func checkX(x *float32, n int) (or, least uint32)

// pairIdx selects, for VPERMI2W, the high halves of 32 float32 patterns:
// words 1, 3, …, 63 of two registers.
//
//lint:ignore U1000 read by packX16
var pairIdx = func() (p [32]uint16) {
	for j := range p {
		p[j] = uint16(2*j + 1)
	}
	return p
}()

// transpose16 sets y[r·ldy + o] = c[16·o + r] for o, r < 16: a tile of
// C into y.
//
//go:noescape
func transpose16(y *float32, ldy int, c *float32)

// minMag16 returns the smallest nonzero src[j] & 0x7fff for j < n, or 0
// when there is none; n a positive multiple of 16. AVX2.
//
//go:noescape
func minMag16(src *uint16, n int) uint16

// amxConfig is the tile configuration amxTiles loads: palette 1, the
// eight tiles 16 rows of 64 bytes each.
//
//lint:ignore U1000 read by amxTiles
var amxConfig = func() (c [64]byte) {
	c[0] = 1
	for t := range 8 {
		c[16+2*t] = 64
		c[48+t] = 16
	}
	return c
}()
