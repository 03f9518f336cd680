package plan

import (
	"flag"
	"fmt"
	"math"
	"os"
	"slices"
	"strings"
	"testing"
)

// benchShapes is the bench grid plus narrow outputs and long inputs.
func benchShapes() (shapes [][4]int) {
	ns := []int{1, 2, 4, 8, 16, 17, 32, 64, 128, 256, 512, 4096}
	dims := [][2]int{{1024, 1024}, {4096, 4096}, {4096, 512}, {4096, 1024}, {14336, 4096}}
	for _, io := range dims {
		for _, r := range []int{8, 16, 64} {
			for _, n := range ns {
				shapes = append(shapes, [4]int{n, io[0], io[1], r})
			}
		}
	}
	return shapes
}

// checkLaunch asserts the planner's rules on one launch.
func checkLaunch(t *testing.T, d Device, what string, l Launch, wantInFlight bool) {
	t.Helper()
	if l.Blocks() < 1 || l.Grid[1] > 65535 || l.Grid[2] > 65535 {
		t.Errorf("%s: %s grid %v", what, l.Kernel.Name, l.Grid)
	}
	if l.Split < 1 || l.Split > l.MaxSplit {
		t.Errorf("%s: %s split %d outside [1, %d]", what, l.Kernel.Name, l.Split, l.MaxSplit)
	}
	if occ := d.Occupancy(l.Kernel); occ < 1 {
		t.Errorf("%s: %s does not fit an SM", what, l.Kernel.Name)
	}
	if l.BandwidthBound(d) {
		if w := l.Waves(d); w < 2 && l.Split < l.MaxSplit {
			t.Errorf("%s: bandwidth-bound %s has %.2f waves (%d blocks, split %d of at most %d)",
				what, l.Kernel.Name, w, l.Blocks(), l.Split, l.MaxSplit)
		}
		if wantInFlight {
			if f, tgt := l.InFlightPerSM(d), d.InFlightTarget(); f < tgt {
				if l.Split == l.MaxSplit && l.Blocks() < 2*d.SMs {
					// Grid-limited: too few blocks for 2 per SM even at the
					// largest split the workspace budget allows. Logged, so
					// the table of such shapes is visible with -v.
					t.Logf("%s: %s keeps %.0f bytes of W in flight per SM (target %.0f): %d blocks at the largest split, %d",
						what, l.Kernel.Name, f, tgt, l.Blocks(), l.Split)
				} else {
					t.Errorf("%s: %s keeps %.0f bytes of W in flight per SM, want >= %.0f", what, l.Kernel.Name, f, tgt)
				}
			}
		}
	}
	if !l.BandwidthBound(d) && l.MaxSplit > 1 && l.Kernel.Name != KRed.Name {
		// A compute-bound launch fills at least one wave, unless one more
		// split would put blocks past that wave (a partial second wave
		// costs a whole one) or write and read back partial products for
		// longer than the FLOPs of the idle SMs take.
		rows := l.Grid[1] * MTileN // the rows of [W; A] the tiles cover
		if strings.HasPrefix(l.Kernel.Name, KSmall.Name) {
			rows = l.Grid[0] * SmallRowsPerBlock // lora_forward_small*: the split along y
		}
		more := 8 * float64(l.Split+1) * float64(l.N) * float64(rows) / d.Bandwidth
		idle := l.Flops / d.FLOPs * (1/min(1, l.Waves(d)) - 1)
		next := l.Waves(d) * float64(l.Split+1) / float64(l.Split)
		if w := l.Waves(d); w < 1 && l.Split < l.MaxSplit && next <= 1 && more < idle {
			t.Errorf("%s: compute-bound %s has %.2f waves (%d blocks, split %d of at most %d)",
				what, l.Kernel.Name, w, l.Blocks(), l.Split, l.MaxSplit)
		}
	}
	// The tensor-core tiles answer to the modelled time alone, padding and
	// partial waves included (TestMMAPlanIsCheapest).
	mma := strings.HasPrefix(l.Kernel.Name, KMMA.Name)
	if p := l.Padding(); p > 0.5 && !mma {
		t.Errorf("%s: %s wastes %.0f%% of its tile rows", what, l.Kernel.Name, 100*p)
	}
	if strings.HasPrefix(l.Kernel.Name, KTiled.Name) {
		if w := l.Waves(d); w < 1 {
			t.Errorf("%s: the 128×128 %s has %.2f waves", what, l.Kernel.Name, w)
		}
	}
}

// planTypes are the operand types the rules are checked on: float32, a
// 16-bit W under float32 activations, all three in one 16-bit type, and an
// NF4 W (default and largest block) under float32 and 16-bit activations.
var planTypes = []Types{{}, {W: BF16}, {W: F16, Y: F16}, {W: BF16, X: BF16, Y: BF16}, {W: F16, X: F16, Y: F16},
	{W: NF4}, {W: NF4, X: BF16, Y: BF16, Block: 4096}}

func TestForwardPlanRules(t *testing.T) {
	for _, d := range Devices {
		if err := d.Valid(); err != nil {
			t.Fatal(err)
		}
		for _, s := range benchShapes() {
			lin := s
			lin[3] = 0 // Linear, and a merged layer's Forward
			for _, ty := range planTypes {
				checkForwardPlan(t, d, s, ty)
				checkForwardPlan(t, d, lin, ty)
			}
		}
	}
}

// checkForwardPlan asserts the planner's rules on the forward of shape s
// (n, in, out, r) with operands of types ty on d.
func checkForwardPlan(t *testing.T, d Device, s [4]int, ty Types) {
	t.Helper()
	{
		{
			n, in, out, r := s[0], s[1], s[2], s[3]
			f := ForwardPlanOf(d, n, in, out, r, ty)
			what := fmt.Sprintf("%s n=%d in=%d out=%d r=%d W=%v x=%v y=%v", d.Name, n, in, out, r, ty.W, ty.X, ty.Y)
			for _, l := range f.Launches() {
				checkLaunch(t, d, what, l, l.Kernel.InFlight > 0)
			}
			if f.Fused != (f.Shrink == nil) && r > 0 {
				t.Errorf("%s: fused %v with shrink %v", what, f.Fused, f.Shrink)
			}
			if f.Fused && (r > 0 || f.Main.Split > 1) && f.Reduce == nil {
				t.Errorf("%s: partial products without a reduction", what)
			}
			if f.Fused && f.Workspace != f.Main.Split*n*(out+r) && f.Reduce != nil {
				t.Errorf("%s: workspace %d", what, f.Workspace)
			}
			if f.Main.Split > 1 && f.Main.BandwidthBound(d) && 2*float64(f.Workspace) > 0.1*float64((out+r)*in) {
				t.Errorf("%s: split %d moves %d floats of partial products, more than 10%% of W's", what, f.Main.Split, 2*f.Workspace)
			}
			small := KSmall.Name + ty.W.suffix()
			if ty.X.half() && ty.X == ty.W && n <= 8 {
				small += "_x" + ty.X.String()
			}
			if n <= SmallNMax && f.Main.Kernel.Name != small {
				t.Errorf("%s: n <= %d planned on %s", what, SmallNMax, f.Main.Kernel.Name)
			}
			// Every kernel is the variant of its operand's type.
			for _, l := range f.Launches() {
				want := ty.W
				switch {
				case f.Reduce != nil && l.Kernel.Name == f.Reduce.Kernel.Name:
					want = ty.Y
				case f.Shrink != nil && l.Kernel.Name == f.Shrink.Kernel.Name:
					want = F32
					if f.MMA {
						want = ty.X
					}
				}
				name, _, _ := strings.Cut(l.Kernel.Name, "_x") // lora_forward_small_bf16_xbf16
				half := strings.HasSuffix(name, "_f16") || strings.HasSuffix(name, "_bf16")
				if !strings.HasSuffix(name, want.suffix()) || want.half() != half {
					t.Errorf("%s: %s is not the %v variant", what, l.Kernel.Name, want)
				}
			}
			// The tensor cores: sm_80 and newer, x in W's 16-bit type, and
			// there for every large n whose 128×128 tiles fill a wave.
			if f.MMA && (d.Arch < 80 || !ty.W.half() || ty.X != ty.W || n <= SmallNMax) {
				t.Errorf("%s: planned on tensor cores", what)
			}
			if !f.MMA && d.Arch >= 80 && ty.W.half() && ty.X == ty.W && !f.Fused {
				t.Errorf("%s: the 128×128 CUDA-core tiles where the tensor cores fit", what)
			}
			if f.XNative != (f.MMA || n <= 8 && ty.X.half() && ty.X == ty.W) {
				t.Errorf("%s: x read as it is: %v", what, f.XNative)
			}
			if f.MMA && (f.Fused || f.Reduce != nil || (r > 0) != (f.Shrink != nil) || f.Workspace != n*r) {
				t.Errorf("%s: tensor cores with fused %v, reduce %v, shrink %v, workspace %d", what, f.Fused, f.Reduce, f.Shrink, f.Workspace)
			}
			// The conversions the caller launches: a 16-bit x the kernels
			// read in float32, a 16-bit y an unfused plan writes in float32.
			if (f.WidenX != nil) != (ty.X.half() && !f.XNative) || f.WidenX != nil && f.WidenX.Kernel.Name != "lora_convert_"+ty.X.String()+"_f32" {
				t.Errorf("%s: x widened by %v", what, f.WidenX)
			}
			if (f.RoundY != nil) != (ty.Y.half() && !f.Fused) || f.RoundY != nil && f.RoundY.Kernel.Name != "lora_convert_f32_"+ty.Y.String() {
				t.Errorf("%s: y rounded by %v", what, f.RoundY)
			}
			// A 16-bit y is rounded by a reduction wherever the plan is fused.
			if f.Fused && ty.Y.half() && f.Reduce == nil {
				t.Errorf("%s: fused with a %v y and no reduction", what, ty.Y)
			}
			// W's bytes: a 16-bit W moves half of float32's, an NF4 W half a
			// byte an element and 4 bytes a block.
			wb := float64(ty.W.Size() * out * in)
			if ty.W == NF4 {
				bs := ty.Block
				if bs == 0 {
					bs = 64
				}
				wb = float64(out*in)/2 + 4*float64((out*in+bs-1)/bs)
			}
			if want := wb + float64(4*r*in) + float64(ty.X.Size()*n*in+ty.Y.Size()*n*out); f.Main.Bytes != want {
				t.Errorf("%s: main moves %.0f bytes, want %.0f", what, f.Main.Bytes, want)
			}
		}
	}
}

// TestForwardPlanNoCliff: the forward at n = 17 plans no more W traffic
// and no fewer blocks per SM than the n = 16 one, and none of the 128×128
// tiles (the cliff of the 128×128 path at 17 <= n, where 87 % of each tile
// was padding, is gone; the 32-row tensor-core tiles may win there).
func TestForwardPlanNoCliff(t *testing.T) {
	for _, d := range Devices {
		for _, io := range [][2]int{{4096, 4096}, {1024, 1024}, {14336, 4096}} {
			for _, ty := range planTypes {
				a, b := ForwardPlanOf(d, 16, io[0], io[1], 16, ty), ForwardPlanOf(d, 17, io[0], io[1], 16, ty)
				if strings.HasPrefix(b.Main.Kernel.Name, KTiled.Name) || b.MMA && b.Main.TileM == MMATileM {
					t.Errorf("%s %v: n = 17 on the 128×128 tiles", d.Name, io)
				}
				if b.Main.BandwidthBound(d) && b.Main.InFlightPerSM(d) < min(a.Main.InFlightPerSM(d), d.InFlightTarget()) {
					t.Errorf("%s %v %v: n = 17 keeps %.0f bytes in flight per SM, n = 16 %.0f", d.Name, io, ty,
						b.Main.InFlightPerSM(d), a.Main.InFlightPerSM(d))
				}
			}
		}
	}
}

func TestGradXAndMergeRules(t *testing.T) {
	for _, d := range Devices {
		for _, s := range benchShapes() {
			n, in, out, r := s[0], s[1], s[2], s[3]
			for _, w := range []Elem{F32, F16, BF16, NF4} {
				what := fmt.Sprintf("%s n=%d in=%d out=%d r=%d W=%v", d.Name, n, in, out, r, w)
				g := GradXOf(d, n, in, out, r, Types{W: w})
				m, red, ws := g.Main, g.Reduce, g.Workspace
				if w == NF4 {
					if n > SmallNMax {
						continue // the NF4 tiles answer to the modelled time (TestNF4PlanIsCheapest)
					}
				} else {
					// lora_grad_x_small_f16/_bf16 keep 8 bytes of W a lane a
					// row in flight, half the float32 kernel's: below the
					// target on an H200.
					checkLaunch(t, d, what+" grad_x", m, w == F32 || n > SmallNMax)
				}
				if (red != nil) != (m.Split > 1) || (ws > 0) != (m.Split > 1) || ws != m.Split*n*in && m.Split > 1 {
					t.Errorf("%s: grad_x split %d, reduce %v, workspace %d", what, m.Split, red, ws)
				}
				if strings.HasPrefix(m.Kernel.Name, KGradXTiled.Name) && m.Waves(d) < 1 {
					t.Errorf("%s: the 128×128 %s has %.2f waves", what, m.Kernel.Name, m.Waves(d))
				}
			}
			if n == 1 {
				checkLaunch(t, d, fmt.Sprintf("%s in=%d out=%d r=%d merge", d.Name, in, out, r), Merge(d, out, in, r), true)
			}
		}
	}
}

// TestGradXPlanIsCheapest: at every n up to 1100 (and beyond, in steps) on
// every device, for a float32, F16 and BF16 W, dx's plan is the candidate
// of the least modelled time; n <= SmallNMax has one candidate,
// lora_grad_x_small of W's type; above, the candidates are the m-tiles of
// MTileHeight(n) rows on the grid (⌈n/bm⌉, ⌈in/128⌉, split) with dx's FLOPs
// and bytes, and the 128×128 tiles exactly where they fill a wave with at
// most half of their rows padding. Every m-tile height, the split and the
// unsplit m-tiles and the 128×128 tiles are each chosen somewhere, and on
// an H100 and an H200 the m-tiles beat the 128×128 tiles at 4096×4096,
// r = 16, for 17 <= n <= 512, by 5× at least at n <= 64.
func TestGradXPlanIsCheapest(t *testing.T) {
	dims := [][2]int{{1024, 1024}, {4096, 4096}, {4096, 512}, {4096, 1024}, {14336, 4096}}
	chosen := map[string]bool{}
	ns := []int{}
	for n := 1; n <= 1100; n++ {
		ns = append(ns, n)
	}
	for n := 1101; n <= 4096; n += 61 {
		ns = append(ns, n)
	}
	for _, d := range Devices {
		for _, w := range []Elem{F32, F16, BF16} {
			for _, io := range dims {
				for _, r := range []int{0, 16, 64} {
					in, out := io[0], io[1]
					for _, n := range ns {
						what := fmt.Sprintf("%s n=%d in=%d out=%d r=%d W=%v", d.Name, n, in, out, r, w)
						g := GradXOf(d, n, in, out, r, Types{W: w})
						c := GradXCandidates(d, n, in, out, r, Types{W: w})
						least := math.Inf(1)
						for _, h := range c {
							least = min(least, h.Time(d))
						}
						if g.Time(d) != least {
							t.Fatalf("%s: dx on %s takes %.4g s, the cheapest candidate %.4g s", what, g.Main.Kernel.Name, g.Time(d), least)
						}
						checkGradXCandidates(t, d, what, n, in, out, r, w, c)
						key := strings.TrimSuffix(g.Main.Kernel.Name, w.suffix())
						chosen[fmt.Sprintf("%s split %v", key, g.Main.Split > 1)] = true
					}
				}
			}
		}
	}
	for _, k := range []string{"lora_grad_x_small split true", "lora_grad_x_m16 split true", "lora_grad_x_m16 split false",
		"lora_grad_x_m32 split true", "lora_grad_x_m32 split false", "lora_grad_x_m64 split true",
		"lora_grad_x_m64 split false", "lora_grad_x_tiled split false"} {
		if !chosen[k] {
			t.Errorf("dx never chose %s (chose %v)", k, chosen)
		}
	}
	for _, d := range []Device{H100, H200} {
		for _, w := range []Elem{F32, BF16} {
			for _, n := range []int{17, 32, 33, 64, 65, 128, 256, 512} {
				g := GradXOf(d, n, 4096, 4096, 16, Types{W: w})
				tiled := GradXPlan{Main: Launch{Kernel: ofType(KGradXTiled, w), Grid: [3]int{ceilDiv(n, TileM), 32, 1},
					TileM: TileM, N: n, Split: 1, MaxSplit: 1, Bytes: g.Main.Bytes, Flops: g.Main.Flops}}
				if g.Main.TileM == TileM || !(g.Time(d) < tiled.Time(d)) || n <= 64 && !(5*g.Time(d) < tiled.Time(d)) {
					t.Errorf("%s W=%v n=%d: dx on %s takes %.3g s, the 128×128 tiles %.3g s", d.Name, w, n,
						g.Main.Kernel.Name, g.Time(d), tiled.Time(d))
				}
			}
		}
	}
}

// checkGradXCandidates checks the candidates of one plan of dx against
// their definition (see TestGradXPlanIsCheapest).
func checkGradXCandidates(t *testing.T, d Device, what string, n, in, out, r int, w Elem, c []GradXPlan) {
	t.Helper()
	bytes := float64(w.Size())*float64(out)*float64(in) + 4*float64(r)*float64(in) + 4*float64(n)*float64(in+out)
	flops := 2 * float64(n) * float64(out+r) * float64(in)
	for _, g := range c {
		split := g.Main.Grid[2] // the small kernel splits along y
		if n <= SmallNMax {
			split = g.Main.Grid[1]
		}
		if g.Main.Bytes != bytes || g.Main.Flops != flops || g.Main.Split != split {
			t.Fatalf("%s: %s moves %g bytes, %g FLOPs, split %d on grid %v", what, g.Main.Kernel.Name,
				g.Main.Bytes, g.Main.Flops, g.Main.Split, g.Main.Grid)
		}
	}
	if n <= SmallNMax {
		if len(c) != 1 || c[0].Main.Kernel.Name != KGradX.Name+w.suffix() {
			t.Fatalf("%s: %d candidates, the first %s", what, len(c), c[0].Main.Kernel.Name)
		}
		return
	}
	bm := MTileHeight(n)
	m := c[len(c)-1].Main
	if m.Kernel.Name != fmt.Sprintf("lora_grad_x_m%d%s", bm, w.suffix()) || m.Grid[0] != ceilDiv(n, bm) ||
		m.Grid[1] != ceilDiv(in, MTileN) || m.TileM != bm {
		t.Fatalf("%s: m-tile candidate %s on grid %v", what, m.Kernel.Name, m.Grid)
	}
	steps := ceilDiv(out, MTileK) + ceilDiv(r, MTileK)
	if red := c[len(c)-1].Reduce; m.Split > max(1, steps/4) || (red != nil) != (m.Split > 1) {
		t.Fatalf("%s: %s split %d of %d K-steps, reduce %v", what, m.Kernel.Name, m.Split, steps, red)
	}
	tiledOK := float64(ceilDiv(n, TileM)*TileM-n) <= 0.5*float64(ceilDiv(n, TileM)*TileM)
	tiledOK = tiledOK && ceilDiv(n, TileM)*ceilDiv(in, TileN) >= d.Occupancy(KGradXTiled)*d.SMs
	if len(c) != 1+map[bool]int{true: 1}[tiledOK] ||
		tiledOK && (c[0].Main.Kernel.Name != KGradXTiled.Name+w.suffix() || c[0].Main.Grid != [3]int{ceilDiv(n, TileM), ceilDiv(in, TileN), 1}) {
		t.Fatalf("%s: %d candidates, the 128×128 tiles allowed %v", what, len(c), tiledOK)
	}
}

func TestStreamGrids(t *testing.T) {
	for _, c := range []struct {
		count        int64
		threads, per int
		max, want    int
	}{
		{0, 256, 16, 1024, 1}, {1, 256, 16, 1024, 1}, {4096, 256, 16, 1024, 1}, {4097, 256, 16, 1024, 2},
		{1 << 40, 256, 16, 1024, 1024}, {1 << 20, 256, 1, 4096, 4096},
	} {
		if got := Stream(c.count, c.threads, c.per, c.max); got != c.want {
			t.Errorf("Stream(%d, %d, %d, %d) = %d, want %d", c.count, c.threads, c.per, c.max, got, c.want)
		}
	}
	for _, c := range []struct{ rows, cols, gx, gy int }{
		{1, 1, 1, 1}, {5, 4, 1, 5}, {4096, 4096, 4, 256}, {1, 1 << 20, 1024, 1}, {1 << 20, 3, 1, 1024},
	} {
		if gx, gy := BiasGrid(c.rows, c.cols); gx != c.gx || gy != c.gy {
			t.Errorf("BiasGrid(%d, %d) = %d, %d, want %d, %d", c.rows, c.cols, gx, gy, c.gx, c.gy)
		}
	}
}

func TestOccupancy(t *testing.T) {
	// 253 registers: 8192 per warp, 32768 per block of 4 warps, 2 per 64K;
	// shared 33792 B: 6 per 228 KB.
	if got := H200.Occupancy(KSmall); got != 2 {
		t.Errorf("H200 occupancy of %s = %d, want 2", KSmall.Name, got)
	}
	// 120 registers: 3840 per warp, 30720 per block of 8 warps: 2 per 64K.
	if got := H200.Occupancy(KM16); got != 2 {
		t.Errorf("H200 occupancy of %s = %d, want 2", KM16.Name, got)
	}
	// 56 registers × 256 threads: 14336 per block, 4 per 64K.
	if got := H200.Occupancy(Kernel{Threads: 256, Regs: 56}); got != 4 {
		t.Errorf("H200 occupancy of 256 threads × 56 registers = %d, want 4", got)
	}
	// V100: 96 KB of shared memory hold 2 blocks of 33792 B.
	if got := V100.Occupancy(KSmall); got != 2 {
		t.Errorf("V100 occupancy of %s = %d, want 2", KSmall.Name, got)
	}
	// From sm_80 on the driver reserves 1 KB of shared memory a block: an
	// A100's 164 KB hold 4 blocks of 41 KB alone, 3 with 42 KB each; an
	// sm_70 reserves none.
	if got := A100.Occupancy(Kernel{Threads: 128, Shared: 41 << 10}); got != 3 {
		t.Errorf("A100 occupancy of 41 KB blocks = %d, want 3", got)
	}
	if got := V100.Occupancy(Kernel{Threads: 128, Shared: 48 << 10}); got != 2 {
		t.Errorf("V100 occupancy of 48 KB blocks = %d, want 2", got)
	}
	// Registers of the SASS for the device's architecture: lora_merge has
	// 121 on sm_70, 2 blocks of 256 threads (30976 registers each) per 64K,
	// and 128 on sm_90, 2 per 64K; a device of an architecture the fatbin
	// has no SASS for gets sm_90's.
	if got, want := V100.Regs(KMerge), kernelRegs[KMerge.Name][70]; got != want || got == KMerge.Regs {
		t.Errorf("V100 registers of %s = %d, want %d (not sm_90's %d)", KMerge.Name, got, want, KMerge.Regs)
	}
	if other := (Device{Arch: 100}); other.Regs(KMerge) != KMerge.Regs {
		t.Errorf("sm_100 registers of %s = %d, want sm_90's %d", KMerge.Name, other.Regs(KMerge), KMerge.Regs)
	}
	if got := H200.Occupancy(Kernel{Threads: 1024}); got != 2 {
		t.Errorf("occupancy of a 1024-thread block = %d, want 2", got)
	}
	if tgt := H200.InFlightTarget(); tgt < 25000 || tgt > 26000 {
		t.Errorf("H200 in-flight target %.0f, want about 25.5 KB", tgt)
	}
}

// legacyForward is the launch geometry before the planner: forward_small
// over out/16 blocks for n <= 16 after a shrink of ⌈n/8⌉×⌈r/8⌉ blocks, the
// 128×128 tiles for every larger n.
func legacyForward(n, in, out, r int) []Launch {
	wBytes := 4 * float64(out) * float64(in)
	flops := 2 * float64(n) * float64(out) * float64(in)
	shrink := Launch{Kernel: KShrink, Grid: [3]int{ceilDiv(n, ShrinkRows), ceilDiv(r, ShrinkKs), 1}, Split: 1, MaxSplit: 1,
		Bytes: 4 * float64(n*in+r*in), Flops: 2 * float64(n*r*in)}
	if n <= SmallNMax {
		k := KSmall
		// before the split: __launch_bounds__(128, 3); not the kernel of
		// that name in lora.fatbin, whose registers Occupancy would take
		k.Name, k.Regs = legacySmall, 168
		u := 4
		if n > 2 {
			u = 2
		}
		if n > 4 {
			u = 1
		}
		k.InFlight = SmallThreads * u * SmallRowsPerWarp * 16
		return []Launch{shrink, {Kernel: k, Grid: [3]int{ceilDiv(out, SmallRowsPerBlock), 1, 1}, Split: 1, MaxSplit: 1,
			Bytes: wBytes, Flops: flops}}
	}
	return []Launch{shrink, {Kernel: KTiled, Grid: [3]int{ceilDiv(n, TileM), ceilDiv(out, TileN), 1}, TileM: TileM, N: n,
		Split: 1, MaxSplit: 1, Bytes: wBytes, Flops: flops}}
}

// legacySmall names the kernel lora_forward_small was before the split.
const legacySmall = "lora_forward_small (before the split)"

// row describes launches compactly: for each, kernel grid×split: blocks,
// waves, KB of W in flight per SM, padding of the tile rows.
func row(d Device, ls []Launch) string {
	var parts []string
	for _, l := range ls {
		name := strings.TrimSuffix(l.Kernel.Name, legacySmall[len(KSmall.Name):])
		name = strings.TrimPrefix(strings.TrimPrefix(name, "lora_"), "forward_")
		parts = append(parts, fmt.Sprintf("%s %dx%dx%d: %d blk %.2fw %.0fKB %.0f%%",
			name, l.Grid[0], l.Grid[1], l.Grid[2], l.Blocks(), l.Waves(d), l.InFlightPerSM(d)/1024, 100*l.Padding()))
	}
	return strings.Join(parts, " + ")
}

// planTable is the golden file TestPlanTable compares the H200's plans with.
const planTable = "../../docs/plan/h200.txt"

var update = flag.Bool("update", false, "rewrite "+planTable+" from the planner")

// TestPlanTable builds the launches of Forward on the H200 for every bench
// shape: before (the geometry the backend used before the planner) and
// after, and after for a BF16 W under float32 x and y ("bf16 W"), for W, x
// and y all BF16 ("bf16"; F16 plans the same launches) and for an NF4 W in
// blocks of 64 under float32 x and y ("nf4 W"), these two with the plan's
// modelled time. It compares the text with docs/plan/h200.txt, which
// -update rewrites.
func TestPlanTable(t *testing.T) {
	got := planText(H200)
	if *update {
		if err := os.WriteFile(planTable, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(planTable)
	if err != nil {
		t.Fatalf("%v (go test -run TestPlanTable ./internal/plan -update writes it)", err)
	}
	if got == string(want) {
		return
	}
	// Lines keep their newline, so that a missing last one shows too.
	g, w := strings.SplitAfter(got, "\n"), strings.SplitAfter(string(want), "\n")
	i := 0
	for i < len(g) && i < len(w) && g[i] == w[i] {
		i++
	}
	line := func(ls []string) string {
		if i < len(ls) {
			return fmt.Sprintf("%q", ls[i])
		}
		return "(end of text)"
	}
	t.Errorf("the plans differ from %s (%d bytes, the planner's %d) first at line %d:\n  file:    %s\n  planner: %s\n"+
		"if the change is meant, rewrite the file with go test -run TestPlanTable ./internal/plan -update and review its diff",
		planTable, len(want), len(got), i+1, line(w), line(g))
}

// planText is the text of docs/plan/h200.txt for the device d.
func planText(d Device) string {
	var b strings.Builder
	b.WriteString(`# Launch plans for an H200 at every bench shape, before (the fixed launch code) and after (internal/plan),
# and after for a BF16 W under float32 x and y (bf16 W), for W, x and y BF16 (bf16; F16 plans the same launches;
# with its modelled time, the conversions of x and y included) and for an NF4 W in blocks of 64 under float32 x
# and y (nf4 W, with its modelled time).
# Made by: go test -run TestPlanTable ./internal/plan -update   (blocks, waves, KB of W in flight per SM, tile padding)
`)
	fmt.Fprintf(&b, "%s: %d SMs, target %.1f KB in flight per SM\n", d.Name, d.SMs, d.InFlightTarget()/1024)
	for _, io := range [][2]int{{1024, 1024}, {4096, 4096}, {4096, 512}, {4096, 1024}, {14336, 4096}} {
		for _, r := range []int{8, 16, 64} {
			for _, n := range []int{1, 2, 4, 8, 16, 17, 32, 64, 128, 256, 512, 4096} {
				nf4 := ForwardPlanOf(d, n, io[0], io[1], r, Types{W: NF4})
				bf16 := ForwardPlanOf(d, n, io[0], io[1], r, Types{W: BF16, X: BF16, Y: BF16})
				fmt.Fprintf(&b, "in=%d out=%d r=%d n=%d\n    before: %s\n    after:  %s\n    bf16 W: %s\n    bf16:   %s = %.1f µs\n    nf4 W:  %s = %.1f µs\n",
					io[0], io[1], r, n,
					row(d, legacyForward(n, io[0], io[1], r)), row(d, ForwardPlan(d, n, io[0], io[1], r).Launches()),
					row(d, ForwardPlanOf(d, n, io[0], io[1], r, Types{W: BF16}).Launches()),
					row(d, bf16.Launches()), 1e6*bf16.Time(d),
					row(d, nf4.Launches()), 1e6*nf4.Time(d))
			}
		}
	}
	return b.String()
}

// TestLaunchTime pins the model of Launch.Time on hand-computed launches.
func TestLaunchTime(t *testing.T) {
	d := Device{"model", 10, 100 << 10, 2048, 65536, 32, 1e12, 1e13, 1e-6, 80, 1e14}
	// 256 threads, 64 registers: 4 blocks an SM, 40 slots. 60 blocks are 1.5
	// waves, so half the slots of the second are idle: busy 0.75.
	k := Kernel{"k", 256, 64, 0, 0}
	compute := Launch{Kernel: k, Grid: [3]int{60, 1, 1}, Bytes: 1e6, Flops: 3e9, Dequant: 1e8}
	// memory 1 µs; compute (3e9 + 8·1e8) / (1e13 · 0.75) = 506.67 µs
	if got, want := compute.Time(d), LaunchOverhead+3.8e9/0.75e13; math.Abs(got-want) > 1e-12 {
		t.Errorf("compute-bound Time = %g, want %g", got, want)
	}
	// Tiles of 128 rows over n = 192: a quarter of the rows is padding, so
	// the FLOPs count 4/3 times.
	padded := Launch{Kernel: k, Grid: [3]int{40, 1, 1}, TileM: 128, N: 192, Flops: 3e9}
	if got, want := padded.Time(d), LaunchOverhead+4e9/1e13; math.Abs(got-want) > 1e-12 {
		t.Errorf("padded Time = %g, want %g", got, want)
	}
	// Bandwidth-bound with 10 KB in flight a block, 4 resident: 40 KB of the
	// 100 KB target (1 µs × 1 TB/s ÷ 10 SMs), so 40 % of the bandwidth; the
	// reread bytes count.
	k.InFlight = 10000
	mem := Launch{Kernel: k, Grid: [3]int{80, 1, 1}, Bytes: 1e8, Reread: 1e8, Flops: 1e6}
	if got, want := mem.Time(d), LaunchOverhead+2e8/(0.4e12); math.Abs(got-want) > 1e-12 {
		t.Errorf("bandwidth-bound Time = %g, want %g", got, want)
	}
	// Tensor cores: lora_forward_mma_* holds 2 blocks an SM (126 registers
	// × 256 threads; 40960 B of shared memory), 20 slots: 30 blocks are 1.5
	// waves, busy 0.75. Tiles of 128 rows over n = 192: padding 0.25. The
	// rank term's 3e8 FLOPs on the CUDA cores, then 3e10 on the tensor
	// cores: (3e8/0.75/1e13 + 3e10/0.75/1e14) / 0.75 = 586.67 µs. Memory:
	// 2 × 16 KB in flight an SM, 32.8 % of the target: 305 µs, less.
	tc := Launch{Kernel: KMMA, Grid: [3]int{2, 15, 1}, TileM: 128, N: 192, Bytes: 1e8, Flops: 3e8, TensorFlops: 3e10}
	if got, want := tc.Time(d), LaunchOverhead+(4e-5+4e-4)/0.75; math.Abs(got-want) > 1e-12 {
		t.Errorf("tensor-core Time = %g, want %g", got, want)
	}
	if tc.BandwidthBound(d) {
		t.Error("the tensor-core launch is modelled bandwidth-bound")
	}
	// Without a tensor rate the tensor cores' FLOPs never finish.
	if d.Tensor = 0; !math.IsInf(tc.Time(d), 1) {
		t.Errorf("tensor-core Time without tensor cores = %g", tc.Time(d))
	}
}

// TestMMAPlanTime pins the modelled time of the tensor-core launch the
// H100 plans for bf16 x, W and y at n = 1024, in = out = 4096, r = 16: 8 ×
// 32 = 256 blocks of 264 slots (2 an SM), busy 256/264; 2·1024·4096·16
// FLOPs of rank term at 67 TFLOP/s (2.00 µs) and 2·1024·4096·4096 at 989
// (34.74 µs), over 256/264: 37.89 µs, above the 50.6 MB at 3.35 TB/s
// (15.1 µs, 32 KB in flight an SM against a target of 17.3 KB); with the
// launch, 40.9 µs.
func TestMMAPlanTime(t *testing.T) {
	f := ForwardPlanOf(H100, 1024, 4096, 4096, 16, Types{W: BF16, X: BF16, Y: BF16})
	m := f.Main
	if !f.MMA || m.Blocks() != 256 || m.Flops != 2*1024*4096*16 || m.TensorFlops != 2*1024*4096*4096 ||
		m.Bytes != 2*4096*4096+4*16*4096+2*1024*4096*2 {
		t.Fatalf("%s on %v: %g + %g FLOPs, %g bytes", m.Kernel.Name, m.Grid, m.Flops, m.TensorFlops, m.Bytes)
	}
	want := LaunchOverhead + (2*1024*4096*16/67e12+2*1024*4096*4096/989e12)*264/256
	if got := m.Time(H100); math.Abs(got-want) > 1e-12 || math.Abs(want-40.9e-6) > 0.05e-6 {
		t.Errorf("Time = %g, want %g", got, want)
	}
}

// TestNF4PlanIsCheapest: for an NF4 W, at every n from 1 to 4096 on every
// device and bench dimension, ForwardPlanOf and GradXNF4 choose a candidate
// of the least modelled time, and the small kernels at n <= SmallNMax; and
// each of the kernels is chosen somewhere, the small ones at n = 1, the
// 128×128 ones at n = 4096 on the H200, so that the choice is not a
// constant.
func TestNF4PlanIsCheapest(t *testing.T) {
	chosen := map[string]bool{}
	for _, d := range Devices {
		for _, io := range [][3]int{{4096, 4096, 16}, {1024, 1024, 8}, {4096, 512, 64}, {14336, 4096, 16}, {4096, 14336, 0}} {
			in, out, r := io[0], io[1], io[2]
			for n := 1; n <= 4096; n++ {
				ty := Types{W: NF4}
				what := fmt.Sprintf("%s n=%d in=%d out=%d r=%d", d.Name, n, in, out, r)
				f := ForwardPlanOf(d, n, in, out, r, ty)
				c := ForwardNF4Candidates(d, n, in, out, r, ty)
				least := math.Inf(1)
				for _, g := range c {
					least = min(least, g.Time(d))
				}
				if f.Time(d) != least {
					t.Fatalf("%s: forward on %s takes %.3g s, the cheapest candidate %.3g s", what, f.Main.Kernel.Name, f.Time(d), least)
				}
				if n <= SmallNMax && (len(c) != 1 || f.Main.Kernel.Name != KSmallNF4.Name) {
					t.Fatalf("%s: %d candidates, %s", what, len(c), f.Main.Kernel.Name)
				}
				chosen["forward "+f.Main.Kernel.Name] = true

				m, red, ws := GradXNF4(d, n, in, out, r, 0)
				g := GradXPlan{m, red, ws}
				least = math.Inf(1)
				for _, h := range GradXNF4Candidates(d, n, in, out, r, 0) {
					least = min(least, h.Time(d))
				}
				if g.Time(d) != least {
					t.Fatalf("%s: dx on %s takes %.3g s, the cheapest candidate %.3g s", what, m.Kernel.Name, g.Time(d), least)
				}
				if n <= SmallNMax && m.Kernel.Name != KGradXNF4.Name {
					t.Fatalf("%s: dx on %s", what, m.Kernel.Name)
				}
				chosen["dx "+m.Kernel.Name] = true
			}
		}
	}
	for _, k := range []Kernel{KSmallNF4, KM32NF4, KM64NF4, KTiledNF4} {
		if !chosen["forward "+k.Name] {
			t.Errorf("the forward never chose %s", k.Name)
		}
	}
	for _, k := range []Kernel{KGradXNF4, KGradXTiledNF4} {
		if !chosen["dx "+k.Name] {
			t.Errorf("dx never chose %s", k.Name)
		}
	}
	if f := ForwardPlanOf(H200, 1, 4096, 4096, 16, Types{W: NF4}); f.Main.Kernel.Name != KSmallNF4.Name {
		t.Errorf("H200 n=1: %s", f.Main.Kernel.Name)
	}
	if f := ForwardPlanOf(H200, 4096, 4096, 4096, 16, Types{W: NF4}); f.Main.Kernel.Name != KTiledNF4.Name || f.Shrink == nil {
		t.Errorf("H200 n=4096: %s after shrink %v", f.Main.Kernel.Name, f.Shrink)
	}
	if m, _, _ := GradXNF4(H200, 4096, 4096, 4096, 16, 0); m.Kernel.Name != KGradXTiledNF4.Name {
		t.Errorf("H200 dx n=4096: %s", m.Kernel.Name)
	}
}

// TestMTileTallestOnTies: the m-tile plans take, among the tile heights
// 64, 32 and 16 that need at most 4 M-tiles (64 always), one with the
// fewest padded rows, and of those the tallest; every fused m-tile plan
// of the bench shapes has that height.
func TestMTileTallestOnTies(t *testing.T) {
	want := func(n int) int {
		padded := map[int]int{}
		fewest := math.MaxInt
		for _, h := range []int{16, 32, 64} {
			if tiles := ceilDiv(n, h); tiles <= 4 || h == 64 {
				padded[h] = tiles * h
				fewest = min(fewest, tiles*h)
			}
		}
		tallest := 0
		for h, p := range padded {
			if p == fewest {
				tallest = max(tallest, h)
			}
		}
		return tallest
	}
	// The ties: 17..32 rows fit one tile of 32 or two of 16; 49..64 one
	// of 64, two of 32 or four of 16.
	for n, h := range map[int]int{17: 32, 32: 32, 33: 16, 48: 16, 49: 64, 64: 64, 65: 32, 96: 32, 97: 64, 128: 64} {
		if got := MTileHeight(n); got != h {
			t.Errorf("MTileHeight(%d) = %d, want %d", n, got, h)
		}
	}
	for n := SmallNMax + 1; n <= 4096; n++ {
		if got := MTileHeight(n); got != want(n) {
			t.Fatalf("MTileHeight(%d) = %d, want %d", n, got, want(n))
		}
	}
	for _, d := range Devices {
		for _, s := range benchShapes() {
			for _, ty := range planTypes {
				f := ForwardPlanOf(d, s[0], s[1], s[2], s[3], ty)
				if f.Fused && f.Main.TileM != 0 && f.Main.TileM != want(s[0]) {
					t.Errorf("%s %v %v: %s with tiles of %d rows, want %d", d.Name, s, ty, f.Main.Kernel.Name, f.Main.TileM, want(s[0]))
				}
			}
		}
	}
}

// TestSplitGridDimension: a split of the inner dimension is carried by the
// grid's y in the small kernels (lora_forward_small*, whose z takes the rows
// of x 16 at a time for an NF4 W, and lora_grad_x_small*, z likewise) and
// by its z in the m-tile kernels, whose y takes the tiles of [W; A]'s rows;
// the 128×128 kernels have no split.
func TestSplitGridDimension(t *testing.T) {
	huge := H200
	huge.SMs = 100000 // every launch splits as far as it may
	for _, d := range append(slices.Clone(Devices), huge) {
		for _, s := range benchShapes() {
			n, in, out, r := s[0], s[1], s[2], s[3]
			for _, ty := range planTypes {
				what := fmt.Sprintf("%s %v %v", d.Name, s, ty)
				f := ForwardPlanOf(d, n, in, out, r, ty)
				m := f.Main
				switch {
				case strings.HasPrefix(m.Kernel.Name, KSmall.Name):
					z := 1
					if ty.W == NF4 {
						z = ceilDiv(n, SmallNMax)
					}
					if m.Grid != [3]int{ceilDiv(out, SmallRowsPerBlock) + ceilDiv(r, SmallRowsPerBlock), m.Split, z} {
						t.Errorf("%s: %s split %d on grid %v", what, m.Kernel.Name, m.Split, m.Grid)
					}
				case strings.HasPrefix(m.Kernel.Name, "lora_forward_m") && m.TileM > 0 && f.Fused:
					if m.Grid != [3]int{ceilDiv(n, m.TileM), ceilDiv(out, MTileN) + ceilDiv(r, MTileN), m.Split} {
						t.Errorf("%s: %s split %d on grid %v", what, m.Kernel.Name, m.Split, m.Grid)
					}
				default:
					bn := TileN
					for _, tile := range MMATiles[1:] {
						if strings.HasPrefix(m.Kernel.Name, tile.Kernel.Name) {
							bn = tile.BN
						}
					}
					if m.Split != 1 || m.Grid[2] != 1 || m.Grid != [3]int{ceilDiv(n, m.TileM), ceilDiv(out, bn), 1} {
						t.Errorf("%s: %s split %d on grid %v", what, m.Kernel.Name, m.Split, m.Grid)
					}
				}
			}
			if n <= SmallNMax {
				m, _, _ := GradX(d, n, in, out, r)
				if m.Grid != [3]int{ceilDiv(in, GradXSmallCols), m.Split, 1} {
					t.Errorf("%s %v: %s split %d on grid %v", d.Name, s, m.Kernel.Name, m.Split, m.Grid)
				}
			}
			if m, _, _ := GradXNF4(d, n, in, out, r, 0); m.Kernel.Name == KGradXNF4.Name &&
				m.Grid != [3]int{ceilDiv(in, GradXSmallCols), m.Split, ceilDiv(n, SmallNMax)} {
				t.Errorf("%s %v: %s split %d on grid %v", d.Name, s, m.Kernel.Name, m.Split, m.Grid)
			}
		}
	}
}

// TestMMAPlanIsCheapest: where the tensor cores may run (sm_80 and newer,
// x and W of one 16-bit type), at every n from 1 to 4096 and every bench
// dimension and rank, the forward is a candidate of the least modelled
// time; above SmallNMax rows the candidates hold the 128×128 tensor-core
// tiles and the fused m-tiles, and the plan is on tensor cores wherever
// their time is below every other candidate's. At n <= SmallNMax the small
// kernel is the only candidate; elsewhere (older GPUs, a float32 x) no
// candidate is on tensor cores. The choice is not a constant: at
// in = out = 4096, r = 16 the H100 and H200 take the m-tiles at n = 17 and
// the tensor cores at n = 128 and 1024, where 128×128 tiles fill no wave.
func TestMMAPlanIsCheapest(t *testing.T) {
	dims := [][2]int{{1024, 1024}, {4096, 4096}, {4096, 512}, {4096, 1024}, {14336, 4096}}
	chosen := map[string]bool{}
	for _, d := range Devices {
		for _, ty := range []Types{{W: BF16, X: BF16, Y: BF16}, {W: F16, X: F16}, {W: BF16}} {
			eligible := d.Arch >= 80 && ty.X == ty.W
			if TensorCores(d, ty) != eligible {
				t.Fatalf("%s %v: TensorCores %v", d.Name, ty, !eligible)
			}
			for _, io := range dims {
				for _, r := range []int{0, 16, 64} {
					in, out := io[0], io[1]
					for n := 1; n <= 4096; n++ {
						checkCheapest(t, d, n, in, out, r, ty, eligible, chosen)
					}
				}
			}
		}
	}
	for _, tile := range MMATiles {
		if !chosen[tile.Kernel.Name] {
			t.Errorf("no plan chose %s (chose %v)", tile.Kernel.Name, chosen)
		}
	}
	for _, d := range []Device{H100, H200} {
		ty := Types{W: BF16, X: BF16, Y: BF16}
		for n, mma := range map[int]bool{17: false, 32: false, 128: true, 1024: true, 4096: true} {
			if f := ForwardPlanOf(d, n, 4096, 4096, 16, ty); f.MMA != mma {
				t.Errorf("%s n=%d in=out=4096 r=16: on tensor cores %v, want %v (%s)", d.Name, n, f.MMA, mma, f.Main.Kernel.Name)
			}
		}
	}
}

// checkCheapest asserts TestMMAPlanIsCheapest's rules on one forward and
// records the tensor-core tile it chose in chosen.
func checkCheapest(t *testing.T, d Device, n, in, out, r int, ty Types, eligible bool, chosen map[string]bool) {
	t.Helper()
	// The forward's name, formed only for a failure: the test checks
	// over a million forwards.
	what := func() string {
		return fmt.Sprintf("%s n=%d in=%d out=%d r=%d W=%v x=%v y=%v", d.Name, n, in, out, r, ty.W, ty.X, ty.Y)
	}
	f := ForwardPlanOf(d, n, in, out, r, ty)
	c := ForwardCandidates(d, n, in, out, r, ty)
	least, other := math.Inf(1), math.Inf(1)
	var mma []Forward
	fused := false
	for _, g := range c {
		least = min(least, g.Time(d))
		if g.MMA {
			mma = append(mma, g)
		} else {
			other = min(other, g.Time(d))
		}
		fused = fused || g.Fused && g.Main.TileM > 0
	}
	if f.Time(d) != least {
		t.Fatalf("%s: the plan on %s takes %.4g s, the cheapest candidate %.4g s", what(), f.Main.Kernel.Name, f.Time(d), least)
	}
	if n <= SmallNMax || !eligible {
		if mma != nil || f.MMA || n <= SmallNMax && len(c) != 1 {
			t.Fatalf("%s: %d candidates, tensor cores %v", what(), len(c), f.MMA)
		}
		return
	}
	if len(mma) != len(MMATiles) || !fused {
		t.Fatalf("%s: %d tensor-core candidates, the m-tiles %v", what(), len(mma), fused)
	}
	least = math.Inf(1)
	for i, tile := range MMATiles {
		m := mma[i].Main
		if m.Kernel.Name != tile.Kernel.Name+ty.W.suffix() || m.Grid != [3]int{ceilDiv(n, tile.BM), ceilDiv(out, tile.BN), 1} ||
			m.TileM != tile.BM || m.TensorFlops != 2*float64(n)*float64(out)*float64(in) || m.TensorRate != tile.Rate() {
			t.Fatalf("%s: tensor-core candidate %s on grid %v with %g FLOPs at %g of the rate", what(), m.Kernel.Name, m.Grid,
				m.TensorFlops, m.TensorRate)
		}
		least = min(least, mma[i].Time(d))
	}
	if least < other && !f.MMA {
		t.Fatalf("%s: the tensor cores take %.4g s, the plan on %s %.4g s", what(), least, f.Main.Kernel.Name, f.Time(d))
	}
	if f.MMA {
		chosen[strings.TrimSuffix(f.Main.Kernel.Name, ty.W.suffix())] = true
		// A smaller tile only where the last wave of 128×128 tiles is partial.
		if big := mma[0].Main; f.Main.Kernel.Name != big.Kernel.Name {
			if w := big.Waves(d); w == math.Ceil(w) {
				t.Fatalf("%s: %s chosen where the 128×128 tiles make %g full waves", what(), f.Main.Kernel.Name, w)
			}
		}
	}
}

// TestMMATileRates pins the shared-memory bytes per FLOP of the
// tensor-core tiles (see MMATile.SharedBytesPerFlop) and their rates.
func TestMMATileRates(t *testing.T) {
	for i, want := range []struct{ bytes, rate float64 }{
		{(4+2)*512.0/(16*4096) + 256.0/16384, 1},
		{(2+2)*512.0/(8*4096) + 192.0/8192, 0.0625 / 0.0859375},
		{(2+1)*512.0/(4*4096) + 128.0/4096, 0.5},
		{(1+1)*512.0/(2*4096) + 96.0/2048, 0.0625 / 0.171875},
	} {
		tile := MMATiles[i]
		if got := tile.SharedBytesPerFlop(); math.Abs(got-want.bytes) > 1e-15 {
			t.Errorf("%d×%d: %g bytes per FLOP, want %g", tile.BM, tile.BN, got, want.bytes)
		}
		if got := tile.Rate(); math.Abs(got-want.rate) > 1e-12 {
			t.Errorf("%d×%d: rate %g, want %g", tile.BM, tile.BN, got, want.rate)
		}
	}
}

// TestTensorRates: the tensor-core rate of every device of the table from
// sm_80 on is within 10 % of its fp32 rate times TensorPerFP32, the ratio a
// device the driver describes gets; older devices get no ratio.
func TestTensorRates(t *testing.T) {
	for _, d := range Devices {
		k := TensorPerFP32(d.Arch)
		if d.Arch < 80 {
			if k != 0 {
				t.Errorf("%s (sm_%d): tensor-core ratio %g", d.Name, d.Arch, k)
			}
			continue
		}
		if got := d.FLOPs * k; math.Abs(got-d.Tensor) > 0.1*d.Tensor {
			t.Errorf("%s: %.0f TFLOP/s fp32 × %g = %.0f TFLOP/s, the table's tensor rate %.0f", d.Name, d.FLOPs/1e12, k, got/1e12, d.Tensor/1e12)
		}
	}
}
