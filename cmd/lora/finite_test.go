package main

import (
	"math"
	"path/filepath"
	"strings"
	"testing"

	"github.com/golora/lora/internal/sysmem"
	"github.com/golora/lora/peft"
)

// TestMergeKeepsBaseNonFinite merges into a base whose weights already hold
// -Inf and NaN (a mask, say), in a merged target of each dtype and in a
// tensor that is only converted: those elements stay as they are, and every
// other element is merged or converted as usual. Merges go in blocks of 90
// elements, so that the non-finite elements fall in several blocks.
func TestMergeKeepsBaseNonFinite(t *testing.T) {
	defer func(b int64) { mergeBlockElems = b }(mergeBlockElems)
	mergeBlockElems = 90
	base, adapterDir := smallSetup(t, nil)
	negInf, nan := float32(math.Inf(-1)), float32(math.NaN())
	marks := []struct {
		name string
		at   int
		v    float32
	}{
		{"model.layers.0.self_attn.q_proj.weight", 3, negInf},   // F32, first block
		{"model.layers.0.self_attn.q_proj.weight", 200, nan},    // F32, a later block
		{"model.layers.0.mlp.down_proj.weight", 100, negInf},    // F16
		{"model.layers.0.self_attn.v_proj.weight", 127, negInf}, // BF16, last element
		{"model.embed_tokens.weight", 9, negInf},                // converted only
	}
	for _, m := range marks {
		patchValue(t, base, m.name, m.at, m.v)
	}
	ad, err := peft.Load(adapterDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, dtype := range []string{"keep", "f16"} {
		t.Run(dtype, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "out")
			if _, stderr, err := runCmd(t, "merge", "-base", base, "-adapter", adapterDir, "-out", out, "-dtype", dtype); err != nil {
				t.Fatalf("%v\n%s", err, stderr)
			}
			in, got := openT(t, base), openT(t, out)
			defer in.close()
			defer got.close()
			rin, rout := &reader{m: in}, &reader{m: got}
			for _, m := range marks {
				v, _ := rout.values(t, m.name)
				if g := v[m.at]; !(g == m.v || g != g && m.v != m.v) {
					t.Errorf("%s[%d] = %v, want the base's %v", m.name, m.at, g, m.v)
				}
			}
			for _, name := range []string{"model.layers.0.self_attn.q_proj.weight", "model.layers.0.mlp.down_proj.weight", "model.layers.0.self_attn.v_proj.weight"} {
				mod, err := ad.Module(strings.TrimSuffix(name, ".weight"))
				if err != nil {
					t.Fatal(err)
				}
				w, _ := rin.values(t, name)
				w = append([]float32(nil), w...)
				v, info := rout.values(t, name)
				checkMerged(t, name, v, w, mod, float64(mod.Scale), info.DType)
			}
		})
	}
}

// TestMergeMemoryEstimate checks the memory a merge asks sysmem.Check for:
// bounded by the block size for a weight of any number of rows, at most
// half as much for an F16 or BF16 weight kept in its dtype (merged through
// a W of that dtype, with no float32 copy) as for the same weight merged in
// float32 (converted with -dtype, or an F32 weight), and more than the
// machine has for a weight whose rank's rows alone cannot fit (8×2³¹ at
// rank 8), which is then an error, not a crash.
func TestMergeMemoryEstimate(t *testing.T) {
	for _, rows := range []int{16384, 131072, 1 << 24} {
		f32 := mergeMemory(rows, 16384, 16, peft.F32, peft.F32)
		if f32 > 64<<20 {
			t.Errorf("%d×16384: %d MiB, want at most 64", rows, f32>>20)
		}
		for _, d := range []peft.DType{peft.F16, peft.BF16} {
			if kept := mergeMemory(rows, 16384, 16, d, d); 2*kept > f32 {
				t.Errorf("%d×16384 %s kept: %.1f MiB, want at most half of float32's %.1f MiB", rows, d, float64(kept)/(1<<20), float64(f32)/(1<<20))
			}
			for _, out := range []peft.DType{peft.F32, peft.F16, peft.BF16} {
				if out != d {
					if got := mergeMemory(rows, 16384, 16, d, out); got != f32 {
						t.Errorf("%d×16384 %s to %s: %d bytes, want float32's %d", rows, d, out, got, f32)
					}
				}
			}
		}
	}
	if got := mergeMemory(8, 1<<31, 8, peft.F32, peft.F32); got < 8<<31*4 {
		t.Errorf("8×2³¹: %d bytes, want at least the block's %d", got, int64(8)<<31*4)
	}
	if got := mergeMemory(8, 1<<31, 8, peft.BF16, peft.BF16); got < 8<<31*2 {
		t.Errorf("8×2³¹ BF16: %d bytes, want at least the block's %d", got, int64(8)<<31*2)
	}
	if err := sysmem.Check("merging", mergeMemory(8, 1<<31, 8, peft.F32, peft.F32)); err == nil && sysmem.Physical() > 0 && sysmem.Physical() < 256<<30 {
		t.Errorf("sysmem.Check accepts a merge needing %d GiB on a machine of %d GiB", mergeMemory(8, 1<<31, 8, peft.F32, peft.F32)>>30, sysmem.Physical()>>30)
	}
}
