package cpu

import (
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"testing"
	"unsafe"

	"github.com/golora/lora/internal/reftest"
)

// Tests of the bf16 product (gemm_bf16.go): its kernels against their
// portable form (bf16TilesGo) and a float64 reference, the driver through
// Product on every remainder of its tiles, blocks, groups and column
// steps and every split among goroutines, and the guard that keeps the
// instructions off subnormal values.

// bf16Kernels returns the kernels of the bf16 product this process runs:
// each instruction the level allows, by name.
func bf16Kernels() map[string]func(a *uint16, lda int, b *uint16, ldb int, c *float32, mt, nt, k32, acc int) {
	k := map[string]func(a *uint16, lda int, b *uint16, ldb int, c *float32, mt, nt, k32, acc int){}
	if useBF16DP {
		k["dpbf16Tiles"] = dpbf16Tiles
		// Its prefetching form over two rows of the same scratch block,
		// 94 lines: fewer than four a step in the larger shapes (the
		// prefetches reach pfEnd and stop), more in the smaller ones.
		k["dpbf16TilesPF"] = func(a *uint16, lda int, b *uint16, ldb int, c *float32, mt, nt, k32, acc int) {
			p := uintptr(unsafe.Pointer(&pfScratch[0]))
			dpbf16TilesPF(a, lda, b, ldb, c, mt, nt, k32, acc, p, p+2*4160, 3000, 4160)
		}
	}
	if useAMX {
		k["amxTiles"] = amxTiles
		// Its prefetching form, over the rows of a scratch block (3000
		// bytes of each, 4160 apart), which must leave its sums alone.
		k["amxTilesPF"] = func(a *uint16, lda int, b *uint16, ldb int, c *float32, mt, nt, k32, acc int) {
			p := uintptr(unsafe.Pointer(&pfScratch[0]))
			amxTilesPF(a, lda, b, ldb, c, mt, nt, k32, acc, p, p+uintptr(len(pfScratch)), 3000, 4160)
		}
	}
	return k
}

// pfScratch is the block amxTilesPF and dpbf16TilesPF prefetch in the
// tests.
var pfScratch = make([]byte, 15*4160)

// randBF16 returns n random bfloat16 values (normal, times scale) as
// float32, and their patterns.
func randBF16(rng *rand.Rand, n int, scale float64) ([]float32, []uint16) {
	v := randF32(rng, n, scale)
	h := make([]uint16, n)
	for i, f := range v {
		h[i] = narrow1(BF16, f)
		v[i] = widen1(BF16, h[i])
	}
	return v, h
}

// TestBF16Tiles checks each kernel against bf16TilesGo (bit for bit for
// VDPBF16PS, which adds in the same order, with its prefetches or not; within the bound of a float32
// sum for TDPBF16PS) and both against a float64 reference, on 1 to 4
// tiles of W (even counts for AMX) and 1 to 5 panels of x, 1 to 3 steps of 32 columns, W's
// tiles further apart than their steps, from zero and onto old sums.
func TestBF16Tiles(t *testing.T) {
	rng := rand.New(rand.NewPCG(181, 182))
	kerns := bf16Kernels()
	if len(kerns) == 0 {
		t.Logf("level %v: no bf16 kernel; the portable form alone", CurrentLevel())
	}
	for _, mt := range []int{1, 2, 3, 4} {
		for _, nt := range []int{1, 2, 3, 4, 5} {
			for _, k32 := range []int{1, 2, 3} {
				for _, extra := range []int{0, 528} {
					for _, acc := range []bool{false, true} {
						lda := 512*k32 + extra
						aval, a := randBF16(rng, mt*lda, 1)
						ldb := 512*k32 + 64
						bval, b := randBF16(rng, nt*ldb, 1)
						c0 := randF32(rng, mt*nt*256, 4)
						want, mag := tilesRef(mt, nt, k32, func(ti, o, k int) float32 { return aval[ti*lda+k/32*512+32*o+k%32] }, bval, ldb, c0, acc)
						what := fmt.Sprintf("mt=%d nt=%d k32=%d lda=%d acc=%v", mt, nt, k32, lda, acc)
						gof := append([]float32(nil), c0...)
						bf16TilesGo(a, lda, b, ldb, gof, mt, nt, k32, acc)
						within(t, "bf16TilesGo "+what, gof, want, mag, accTol(32*k32+1))
						for name, kern := range kerns {
							dp := name == "dpbf16Tiles" || name == "dpbf16TilesPF"
							if !dp && mt%2 != 0 {
								continue
							}
							got := append([]float32(nil), c0...)
							kern(&a[0], lda, &b[0], ldb, &got[0], mt, nt, k32, b2i(acc))
							within(t, name+" "+what, got, want, mag, accTol(32*k32+1))
							if name == "amxTilesPF" {
								// The same sums as amxTiles, bit for bit.
								plain := append([]float32(nil), c0...)
								amxTiles(&a[0], lda, &b[0], ldb, &plain[0], mt, nt, k32, b2i(acc))
								for i := range got {
									if math.Float32bits(got[i]) != math.Float32bits(plain[i]) {
										t.Errorf("%s %s: c[%d] = %v, amxTiles %v", name, what, i, got[i], plain[i])
										break
									}
								}
							}
							if !dp {
								continue
							}
							for i := range got {
								if math.Float32bits(got[i]) != math.Float32bits(gof[i]) {
									t.Errorf("%s %s: c[%d] = %v, bf16TilesGo %v", name, what, i, got[i], gof[i])
									break
								}
							}
						}
					}
				}
			}
		}
	}
}

// tilesRef returns the float64 reference of the tiles of C that the bf16
// kernels compute, and the sums of the magnitudes: c[tile, o, r] = c0
// (when acc) + Σₖ a(ti, o, k)·b, b as x's panels (ldb apart) hold it.
// (No race instrumentation: a float64 reference on one goroutine, as
// reftest's oracle.)
//
//go:norace
func tilesRef(mt, nt, k32 int, a func(ti, o, k int) float32, bval []float32, ldb int, c0 []float32, acc bool) (want, mag []float64) {
	want = make([]float64, len(c0))
	mag = make([]float64, len(c0))
	for ti := range mt {
		for tj := range nt {
			for o := range 16 {
				for r := range 16 {
					e := (ti*nt+tj)*256 + 16*o + r
					if acc {
						want[e], mag[e] = float64(c0[e]), reftest.Abs(float64(c0[e]))
					}
					for k := range 32 * k32 {
						v := float64(a(ti, o, k)) * float64(bval[tj*ldb+k/2*32+2*r+k%2])
						want[e] += v
						mag[e] += reftest.Abs(v)
					}
				}
			}
		}
	}
	return want, mag
}

// TestPackTiles16 checks packTiles16 against packTilesGo and the layout
// the kernels read, on 1 to 3 steps, rows longer than the steps, and its
// least magnitude against minMagBF16's with the least (once a subnormal)
// in each row in turn and a zero elsewhere.
func TestPackTiles16(t *testing.T) {
	rng := rand.New(rand.NewPCG(193, 194))
	for k32 := 1; k32 <= 3; k32++ {
		for _, lds := range []int{32 * k32, 32*k32 + 1, 32*k32 + 17} {
			for row := range 16 {
				_, src := randBF16(rng, 16*lds, 1)
				src[row*lds+rng.IntN(32*k32)] = 0x8001 + uint16(row%2)*0x100
				src[(row+5)%16*lds+rng.IntN(32*k32)] = 0x8000
				got, want := make([]uint16, 512*k32), make([]uint16, 512*k32)
				mn := packTiles16(&got[0], &src[0], lds, k32)
				packTilesGo(want, src, lds, k32)
				if wantMin := minMagBF16(want); mn != wantMin || mn != 1+uint16(row%2)*0x100 {
					t.Errorf("k32=%d lds=%d: least at row %d: packTiles16's least magnitude %#04x, want %#04x", k32, lds, row, mn, wantMin)
				}
				for s := range k32 {
					for o := range 16 {
						for j := range 32 {
							e := s*512 + 32*o + j
							if v := src[o*lds+32*s+j]; got[e] != v || want[e] != v {
								t.Fatalf("k32=%d lds=%d: step %d row %d column %d: packTiles16 %#04x, packTilesGo %#04x, want %#04x",
									k32, lds, s, o, j, got[e], want[e], v)
							}
						}
					}
				}
			}
		}
	}
}

// TestPackX16 checks packX16 against packXGo and the layout the kernels
// read, on 1 to 3 steps, rows longer than the steps.
func TestPackX16(t *testing.T) {
	rng := rand.New(rand.NewPCG(197, 198))
	for k32 := 1; k32 <= 3; k32++ {
		for _, ldx := range []int{32 * k32, 32*k32 + 1, 32*k32 + 19} {
			x := randF32(rng, 16*ldx, 1) // every pattern's high half, whatever its low one
			got, want := make([]uint16, 512*k32), make([]uint16, 512*k32)
			packX16(&got[0], &x[0], ldx, k32)
			packXGo(want, x, ldx, 16, 0, 32*k32)
			for r := range 16 {
				for k := range 32 * k32 {
					e := k/2*32 + 2*r + k%2
					if v := uint16(math.Float32bits(x[r*ldx+k]) >> 16); got[e] != v || want[e] != v {
						t.Fatalf("k32=%d ldx=%d: row %d column %d: packX16 %#04x, packXGo %#04x, want %#04x", k32, ldx, r, k, got[e], want[e], v)
					}
				}
			}
		}
	}
}

// TestCheckX checks checkXBF16 (checkX on the whole 16s) on every length
// to 40, a value with low bits, the least magnitude and zeros at every
// place.
func TestCheckX(t *testing.T) {
	rng := rand.New(rand.NewPCG(199, 200))
	for n := 0; n <= 40; n++ {
		for place := -1; place < n; place++ {
			x, _ := randBF16(rng, n, 1)
			for i := range x {
				if rng.IntN(4) == 0 {
					x[i] = float32(math.Copysign(0, float64(rng.IntN(2))-0.5)) // ±0
				}
			}
			if place >= 0 {
				x[place] = []float32{0x1p-120, -0x1.8p-126, 1 + 0x1p-20, -0x1p-149}[place%4]
			}
			var wantOr uint32
			wantLeast := uint32(math.MaxUint32)
			for _, v := range x {
				b := math.Float32bits(v)
				wantOr |= b
				if m := b >> 16 & 0x7fff; m != 0 {
					wantLeast = min(wantLeast, m-1)
				}
			}
			or, least := checkXBF16(x)
			if or != wantOr || least != wantLeast {
				t.Fatalf("n=%d place=%d: checkXBF16 = %#x, %#x; want %#x, %#x", n, place, or, least, wantOr, wantLeast)
			}
		}
	}
}

// TestTranspose16 checks transpose16 against transposeGo and its
// definition, into rows of y wider than a tile.
func TestTranspose16(t *testing.T) {
	rng := rand.New(rand.NewPCG(195, 196))
	c := randF32(rng, 256, 1)
	for _, ldy := range []int{16, 17, 35} {
		got, want := nanFill(15*ldy+16), nanFill(15*ldy+16)
		transpose16(&got[0], ldy, &c[0])
		transposeGo(want, ldy, c)
		for r := range 16 {
			for o := range ldy {
				if r == 15 && o >= 16 {
					break
				}
				e := r*ldy + o
				g, w := got[e], want[e]
				if o < 16 && (g != c[16*o+r] || w != g) || o >= 16 && (!math.IsNaN(float64(g)) || !math.IsNaN(float64(w))) {
					t.Fatalf("ldy=%d: y[%d, %d] = %v (transposeGo %v), want %v", ldy, r, o, g, w, c[16*min(o, 15)+r])
				}
			}
		}
	}
}

// TestBF16TilesFlush pins what the guard (bf16Safe) is for: the
// instructions read a subnormal input as zero and flush a subnormal sum to
// zero, where the portable form keeps both. And at the guard's bound
// (products of magnitude 2⁻¹⁰³, random signs, so that the sums cancel
// down to multiples of 2⁻¹²⁶) they agree with it bit for bit.
func TestBF16TilesFlush(t *testing.T) {
	for name, kern := range bf16Kernels() {
		for _, c := range []struct {
			what   string
			xv, wv float32
			flush  bool
		}{
			{"subnormal x", 0x1p-130, 0x1p10, true},
			{"subnormal w", 0x1p10, 0x1p-130, true},
			{"subnormal product", 0x1p-70, 0x1p-70, true},
			{"at the bound", 0x1p-52, 0x1p-51, false},
			{"at the bound, 1.5", 0x1.8p-52, 0x1p-52, false},
		} {
			// Two tiles each way, one step; the first pair alone nonzero
			// in W, every pair of x holding xv with random signs.
			rng := rand.New(rand.NewPCG(183, 184))
			a := make([]uint16, 32*32)
			b := make([]uint16, 2*512)
			sign := func() float32 { return float32(1 - 2*rng.IntN(2)) }
			for o := range 32 {
				a[o*32] = narrow1(BF16, sign()*c.wv)
				a[o*32+1] = narrow1(BF16, sign()*c.wv)
			}
			for i := range b {
				b[i] = narrow1(BF16, sign()*c.xv)
			}
			got := make([]float32, 4*256)
			want := make([]float32, 4*256)
			kern(&a[0], 32, &b[0], 512, &got[0], 2, 2, 1, 0)
			bf16TilesGo(a, 32, b, 512, want, 2, 2, 1, false)
			same, zero := true, true
			for i := range got {
				same = same && math.Float32bits(got[i]) == math.Float32bits(want[i])
				zero = zero && got[i] == 0
			}
			if c.flush && (same || !zero) {
				t.Errorf("%s, %s: want every sum flushed to zero, got %v (portable form %v)", name, c.what, got[:4], want[:4])
			}
			if !c.flush && !same {
				t.Errorf("%s, %s: differs from the portable form: %v, want %v", name, c.what, got[:4], want[:4])
			}
		}
	}
}

// TestBF16Safe checks the guard's decisions at its bounds.
func TestBF16Safe(t *testing.T) {
	p := func(v float32) uint16 { return narrow1(BF16, v) }
	for _, c := range []struct {
		x, w uint16
		want bool
	}{
		{0, 0, true}, {0, 1, true}, {1, 0, true},
		{p(0x1p-126), p(0x1p23), true},
		{p(0x1p-127), p(0x1p60), false}, // a subnormal x
		{p(0x1p60), p(0x1p-127), false}, // a subnormal w
		{p(0x1p-52), p(0x1p-51), true},  // the product 2⁻¹⁰³
		{p(0x1p-52), p(0x1.fep-52), false},
		{p(0x1.02p-52), p(0x1p-51), true},
		{p(0x1p-126), p(0x1p22), false},
		{p(1), p(1), true},
	} {
		if got := bf16Safe(c.x, c.w); got != c.want {
			t.Errorf("bf16Safe(%#04x, %#04x) = %v, want %v", c.x, c.w, got, c.want)
		}
	}
}

// TestMinMagBF16 checks minMagBF16 (minMag16 on the whole 16s) on every
// length to 40, the smallest at every place, signs, zeros, NaN and ±Inf.
func TestMinMagBF16(t *testing.T) {
	rng := rand.New(rand.NewPCG(185, 186))
	for n := 0; n <= 40; n++ {
		for place := -1; place < n; place++ {
			s := make([]uint16, n)
			for i := range s {
				switch rng.IntN(4) {
				case 0:
					s[i] = 0x8000 * uint16(rng.IntN(2))
				case 1:
					s[i] = 0x7f80 | uint16(rng.IntN(2))<<15 | uint16(rng.IntN(2)) // ±Inf, NaN
				default:
					s[i] = 0x0500 + uint16(rng.IntN(0x7000)) | uint16(rng.IntN(2))<<15
				}
			}
			if place >= 0 {
				s[place] = 0x8003
			}
			var want uint16
			for _, h := range s {
				if v := h & 0x7fff; v != 0 && (want == 0 || v < want) {
					want = v
				}
			}
			if got := minMagBF16(s); got != want {
				t.Fatalf("n=%d place=%d: minMagBF16 = %#04x, want %#04x", n, place, got, want)
			}
		}
	}
}

// checkBF16Product runs Product on a BF16 W (out×in) and an x of n rows of
// bfloat16 values against the float64 reference: through the bf16 product
// where the level has it (bf16Product must take it), else the path of a
// BF16 W.
func checkBF16Product(t *testing.T, rng *rand.Rand, n, out, in int) {
	t.Helper()
	wv, wb := randBF16(rng, out*in, 1)
	x, _ := randBF16(rng, n*in, 1)
	w := Mat{Rows: out, Cols: in, Type: BF16, Bits: wb}
	want, mag := refNT(x, wv, n, out, in)
	what := fmt.Sprintf("n=%d out=%d in=%d", n, out, in)
	// y with a row and more of NaN past its end, which must stay so.
	yb := nanFill((n+1)*out + 16)
	y := yb[:n*out]
	Product(y, x, w, n)
	within(t, "Product "+what, y, want, mag, accTol(in))
	if bf16Wins(n, out, in) {
		clear(y)
		if !bf16Product(y, x, w, n) {
			t.Fatalf("%s: bf16Product refused x of bfloat16 values", what)
		}
		within(t, "bf16Product "+what, y, want, mag, accTol(in))
	}
	for i, v := range yb[n*out:] {
		if !math.IsNaN(float64(v)) {
			t.Fatalf("%s: written past y's end, at %d after it", what, i)
		}
	}
}

// TestBF16Product runs the driver on batches from 16 to 70 (every
// remainder of the panels of 16 and the groups of 32 padded rows) and
// past a group of bfNC, rows of W leaving every remainder of 32 in a block
// (and past blocks of bfMC), and columns below, at and past a step of 32
// and bfKC, odd ones among them (an unpaired last column).
func TestBF16Product(t *testing.T) {
	rng := rand.New(rand.NewPCG(187, 188))
	for n := bfMinRows; n <= 70; n++ {
		checkBF16Product(t, rng, n, 16+n%33, []int{16, 17, 31, 32, 33, 63, 95}[n%7])
	}
	for _, sh := range [][3]int{{16, 64, 64}, {17, 65, 545}, {33, 130, 1055}, {bfNC + 3, 97, 100},
		{40, 4*runtime.GOMAXPROCS(0)*bfMC + 48, 300}, // blocks of bfMC rows
		{2*bfNC + 16, 33, 67}, {40, 200, bfKC}, {41, 47, 2*bfKC + 1},
		{70, 40, 2*bfChunk/(2*bfMC) + 75}, {bfNC + 20, 50, bfChunk/(2*bfMC) + 33}, // chunks of W's columns
		{40, 2*runtime.GOMAXPROCS(0)*64 + 16, bfChunk/(2*64) + 40},
		{64, 130, 2*bfChunk/(2*64) + 64}, {17, 200, 96}} { // W in place (amxTilesW): three chunks; blocks of 64 rows and a last of 8
		checkBF16Product(t, rng, sh[0], sh[1], sh[2])
	}
}

// TestBF16ProductSplit runs the driver with GOMAXPROCS 7, above the size
// at which blocks of W are split among goroutines (blocks of bfMC/2 rows,
// as bf16BlockRows halves them for 7 goroutines: 14 and a partial one)
// and x's panels packed by several.
func TestBF16ProductSplit(t *testing.T) {
	old := runtime.GOMAXPROCS(7)
	t.Cleanup(func() { runtime.GOMAXPROCS(old) })
	rng := rand.New(rand.NewPCG(189, 190))
	checkBF16Product(t, rng, 37, 7*bfMC+21, 131)
	checkBF16Product(t, rng, 130, 3*bfMC, 77)
	checkBF16Product(t, rng, 50, 7*bfMC+21, 96) // W in place
}

// TestBF16ProductGuard checks that values the instructions would flush
// take an exact path: a W holding a subnormal or tiny values in one
// block, an x holding a subnormal, give the reference's nonzero results
// (the block of W by matGemvGo, such an x by the path of a BF16 W), values
// at the bound take the instructions, and an x of values that are not all
// bfloat16 leaves the bf16 product (bf16Product reports false, y
// untouched).
func TestBF16ProductGuard(t *testing.T) {
	rng := rand.New(rand.NewPCG(191, 192))
	const n, out = 20, 3*bfMC + 5
	// W packed (45 columns: the value in a whole step, then in the last
	// columns) and read in place (96: in the first step and the last; and
	// in a third chunk of W's columns).
	for _, sh := range []struct{ in, col, cases int }{{45, 3, 6}, {45, 42, 6}, {96, 3, 6}, {96, 93, 6}, {2*bfChunk/(2*64) + 32, 2*bfChunk/(2*64) + 29, 1}} {
		testBF16Guard(t, rng, n, out, sh.in, sh.col, sh.cases)
	}
}

// testBF16Guard is TestBF16ProductGuard on W (out×in) with the value that
// the instructions would flush at column col, its first cases cases.
func testBF16Guard(t *testing.T, rng *rand.Rand, n, out, in, col, cases int) {
	for _, c := range []struct {
		what    string
		wv, xv  float32 // placed at W[o, col] and x[i, col]
		guarded int64   // the blocks of W sent to matGemvGo, where x takes the bf16 product
	}{
		{"subnormal w", 0x1p-130, 1, 1},
		{"subnormal x", 0x1p10, 0x1p-129, 0},
		{"the largest subnormal x", 0x1p10, 0x1.fcp-127, 0},
		{"tiny product", 0x1p-70, 0x1p-70, 1},
		{"at the bound", 0x1p-52, 0x1p-51, 0},
		{"a normal w below the bound", 0x1p-80, 0x1p-24, 1},
	}[:cases] {
		wv, wb := randBF16(rng, out*in, 1)
		x, _ := randBF16(rng, n*in, 1)
		// Row o = bfMC+1 of W: zero but for wv, so that y[:, o] = xv·wv
		// exactly; every row of x holds xv at column col.
		o := bfMC + 1
		for k := range in {
			wv[o*in+k], wb[o*in+k] = 0, 0
		}
		wb[o*in+col] = narrow1(BF16, c.wv)
		wv[o*in+col] = widen1(BF16, wb[o*in+col])
		for i := range n {
			x[i*in+col] = widen1(BF16, narrow1(BF16, c.xv))
		}
		w := Mat{Rows: out, Cols: in, Type: BF16, Bits: wb}
		want, mag := refNT(x, wv, n, out, in)
		y := nanFill(n * out)
		g := bf16Guarded.Load()
		Product(y, x, w, n)
		what := fmt.Sprintf("in=%d col=%d %s", in, col, c.what)
		within(t, what, y, want, mag, accTol(in))
		if got := bf16Guarded.Load() - g; useBF16DP && got != c.guarded {
			t.Errorf("%s: %d blocks of W guarded, want %d", what, got, c.guarded)
		}
		if y := nanFill(n * out); useBF16DP && bf16Product(y, x, w, n) == (c.xv < 0x1p-126) {
			t.Errorf("%s: bf16Product took x: %v", what, c.xv >= 0x1p-126)
		}
		exact := float32(float64(wv[o*in+col]) * float64(x[col]))
		for i := range n {
			if y[i*out+o] != exact || exact == 0 {
				t.Errorf("%s: y[%d, %d] = %v, want %v", what, i, o, y[i*out+o], exact)
				break
			}
		}
	}
	// An x not all of bfloat16 values.
	_, wb := randBF16(rng, out*in, 1)
	w := Mat{Rows: out, Cols: in, Type: BF16, Bits: wb}
	for _, at := range []int{0, 63, n*in - 1} {
		x, _ := randBF16(rng, n*in, 1)
		x[at] = math.Nextafter32(x[at], 10)
		y := nanFill(n * out)
		if bf16Product(y, x, w, n) {
			t.Errorf("bf16Product took x with a float32 value at %d", at)
		}
		if !math.IsNaN(float64(y[0])) {
			t.Errorf("bf16Product wrote y though it refused x")
		}
	}
}

// TestBF16ProductSpecial runs the bf16 product on operands holding ±Inf and
// NaN: each element of y is NaN, +Inf or −Inf where the float64 reference
// is, and within the bound elsewhere.
func TestBF16ProductSpecial(t *testing.T) {
	rng := rand.New(rand.NewPCG(201, 202))
	const n, out, in = 37, 70, 75
	wv, wb := randBF16(rng, out*in, 1)
	x, _ := randBF16(rng, n*in, 1)
	inf, nan := float32(math.Inf(1)), float32(math.NaN())
	x[2*in+5], x[9*in+70] = inf, -inf // rows 2 and 9: ±Inf times every row of W
	x[20*in+7], x[20*in+8] = inf, -inf
	x[30*in+74] = nan
	for _, e := range []struct {
		o, k int
		v    float32
	}{{3, 0, nan}, {40, 74, inf}, {65, 33, -inf}} {
		wb[e.o*in+e.k] = narrow1(BF16, e.v)
		wv[e.o*in+e.k] = widen1(BF16, wb[e.o*in+e.k])
	}
	w := Mat{Rows: out, Cols: in, Type: BF16, Bits: wb}
	want, mag := refNT(x, wv, n, out, in)
	y := nanFill(n * out)
	if bf16Wins(n, out, in) && !bf16Product(y, x, w, n) {
		t.Fatal("bf16Product refused x of bfloat16 values")
	}
	if !bf16Wins(n, out, in) {
		Product(y, x, w, n)
	}
	class := func(v float64) int {
		switch {
		case math.IsNaN(v):
			return 0
		case math.IsInf(v, 1):
			return 1
		case math.IsInf(v, -1):
			return 2
		}
		return 3
	}
	bad := 0
	for i, g := range y {
		cw, cg := class(want[i]), class(float64(g))
		if cw != cg || cw == 3 && reftest.Abs(float64(g)-want[i]) > accTol(in)*mag[i]+1e-30 {
			if bad < 3 {
				t.Errorf("y[%d, %d] = %v, want %v", i/out, i%out, g, want[i])
			}
			bad++
		}
	}
	specials := 0
	for _, v := range want {
		if class(v) != 3 {
			specials++
		}
	}
	if bad > 0 || specials < 3*out {
		t.Errorf("%d of %d elements wrong; the reference has %d NaN or ±Inf", bad, len(y), specials)
	}
}
