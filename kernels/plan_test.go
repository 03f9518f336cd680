//go:build cuda || cudaemu

package kernels_test

import (
	"testing"

	"github.com/golora/lora/internal/plan"
	"github.com/golora/lora/kernels"
)

// TestPlanConstants checks that the launch planner's copy of the tile
// constants agrees with tiles.h, which the kernels are compiled with.
func TestPlanConstants(t *testing.T) {
	for _, c := range []struct {
		name        string
		tiles, plan int
	}{
		{"WarpSize", kernels.WarpSize, plan.WarpSize},
		{"ShrinkThreads", kernels.ShrinkThreads, plan.ShrinkThreads},
		{"ShrinkRows", kernels.ShrinkRows, plan.ShrinkRows},
		{"ShrinkKs", kernels.ShrinkKs, plan.ShrinkKs},
		{"SmallNMax", kernels.SmallNMax, plan.SmallNMax},
		{"SmallThreads", kernels.SmallThreads, plan.SmallThreads},
		{"SmallRowsPerWarp", kernels.SmallRowsPerWarp, plan.SmallRowsPerWarp},
		{"SmallRowsPerBlock", kernels.SmallRowsPerBlock, plan.SmallRowsPerBlock},
		{"SmallSplitAlign", kernels.SmallSplitAlign, plan.SmallSplitAlign},
		{"TileM", kernels.TileM, plan.TileM},
		{"TileN", kernels.TileN, plan.TileN},
		{"TileK", kernels.TileK, plan.TileK},
		{"TileThreads", kernels.TileThreads, plan.TileThreads},
		{"MTileN", kernels.MTileN, plan.MTileN},
		{"MTileK", kernels.MTileK, plan.MTileK},
		{"MTileThreads", kernels.MTileThreads, plan.MTileThreads},
		{"ReduceThreads", kernels.ReduceThreads, plan.ReduceThreads},
		{"MergeTileOut", kernels.MergeTileOut, plan.MergeTileOut},
		{"MergeTileIn", kernels.MergeTileIn, plan.MergeTileIn},
		{"MergeThreads", kernels.MergeThreads, plan.MergeThreads},
		{"GradXSmallThreads", kernels.GradXSmallThreads, plan.GradXSmallThreads},
		{"GradXSmallCols", kernels.GradXSmallCols, plan.GradXSmallCols},
		{"FiniteThreads", kernels.FiniteThreads, plan.FiniteThreads},
		{"FinitePerThread", kernels.FinitePerThread, plan.FinitePerThread},
		{"FiniteMaxBlocks", kernels.FiniteMaxBlocks, plan.FiniteMaxBlocks},
		{"BiasThreads", kernels.BiasThreads, plan.BiasThreads},
		{"BiasBlocks", kernels.BiasBlocks, plan.BiasBlocks},
		{"ConvertThreads", kernels.ConvertThreads, plan.ConvertThreads},
		{"ConvertMaxBlocks", kernels.ConvertMaxBlocks, plan.ConvertMaxBlocks},
		{"AxpyThreads", kernels.AxpyThreads, plan.AxpyThreads},
		{"AxpyMaxBlocks", kernels.AxpyMaxBlocks, plan.AxpyMaxBlocks},
	} {
		if c.tiles != c.plan {
			t.Errorf("%s: tiles.h says %d, package plan %d", c.name, c.tiles, c.plan)
		}
	}
	for _, k := range []plan.Kernel{plan.KShrink, plan.KSmall, plan.KTiled, plan.KM16, plan.KM32, plan.KM64,
		plan.KRed, plan.KMerge, plan.KGradX, plan.KGradXTiled, plan.KSmallNF4, plan.KGradXNF4,
		plan.KTiledNF4, plan.KGradXTiledNF4, plan.KM16NF4, plan.KM32NF4, plan.KM64NF4,
		plan.KGradXM16, plan.KGradXM32, plan.KGradXM64, plan.KGradXM16NF4, plan.KGradXM32NF4, plan.KGradXM64NF4} {
		if _, ok := kernels.Params[k.Name]; !ok {
			t.Errorf("package plan names %s, which lora.cu does not define", k.Name)
		}
	}
	for _, tile := range plan.MMATiles {
		for _, suffix := range []string{"_f16", "_bf16"} {
			if _, ok := kernels.Params[tile.Kernel.Name+suffix]; !ok {
				t.Errorf("package plan names %s%s, which lora.cu does not define", tile.Kernel.Name, suffix)
			}
		}
	}
	// Every variant the forward plans launch, for every dtype of W, x, y.
	elems := []plan.Elem{plan.F32, plan.F16, plan.BF16}
	for _, d := range []plan.Device{plan.H200, plan.V100} {
		for _, n := range []int{1, 8, 16, 17, 33, 64, 65, 4096} {
			for _, r := range []int{0, 16} {
				for _, w := range append(elems, plan.NF4) {
					for _, x := range elems {
						if x == plan.F32 {
							// every variant dx's plans launch, for every dtype of W
							g := plan.GradXOf(d, n, 4096, 4096, r, plan.Types{W: w})
							ls := []plan.Launch{g.Main}
							if g.Reduce != nil {
								ls = append(ls, *g.Reduce)
							}
							for _, l := range ls {
								if _, ok := kernels.Params[l.Kernel.Name]; !ok {
									t.Errorf("%s n=%d r=%d W %v: dx's plan launches %s, which lora.cu does not define",
										d.Name, n, r, w, l.Kernel.Name)
								}
							}
						}
						for _, y := range elems {
							f := plan.ForwardPlanOf(d, n, 4096, 4096, r, plan.Types{W: w, X: x, Y: y})
							for _, l := range f.Launches() {
								if _, ok := kernels.Params[l.Kernel.Name]; !ok {
									t.Errorf("%s n=%d r=%d %v %v %v: the plan launches %s, which lora.cu does not define",
										d.Name, n, r, w, x, y, l.Kernel.Name)
								}
							}
						}
					}
				}
			}
		}
	}
}
