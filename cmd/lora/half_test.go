package main

import (
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/golora/lora"
	"github.com/golora/lora/peft"
)

// TestMergeHalfAsFloat32 merges F16 and BF16 weights twice: kept in their
// dtype, which merges through a lora.Matrix of that dtype (the test checks
// that it does), and with -dtype
// f32, which widens W to float32 and merges there, the path every other
// dtype takes. The first result must be the second rounded once to the
// dtype (nearest even, NaN made quiet), bit for bit, in every element: the
// real GPT-2 adapter of testdata on GPT-2's attention and MLP weights
// (Conv1D, stored [in, out], as config.json's model_type says), and the
// small adapter on the small model in blocks of 90 elements (several blocks
// per weight, the last one padded). Some elements of the bases are set to
// the edges of the dtype: a signalling NaN and -Inf (kept as they are, the
// NaN made quiet as the float32 path makes it), the largest finite value,
// the smallest subnormal, and -0.
func TestMergeHalfAsFloat32(t *testing.T) {
	edges := func(d peft.DType) []uint16 {
		if d == peft.F16 {
			return []uint16{0x7c01, 0xfc00, 0x7bff, 0xfbff, 0x0001, 0x8000}
		}
		return []uint16{0x7f81, 0xff80, 0x7f7f, 0xff7f, 0x0001, 0x8000}
	}
	for _, d := range []peft.DType{peft.F16, peft.BF16} {
		t.Run("gpt2/"+string(d), func(t *testing.T) {
			adapterDir := fixture(t)
			layers := []int{0, 11}
			if raceEnabled || lora.Backend() == "cudaemu" {
				layers = layers[:1] // 4.7 Mi elements instead of 9.4
			}
			var specs []spec
			for _, i := range layers {
				h := fmt.Sprintf("transformer.h.%d.", i)
				specs = append(specs,
					spec{h + "attn.c_attn.weight", d, []int{768, 3 * 768}},
					spec{h + "attn.c_proj.weight", d, []int{768, 768}},
					spec{h + "mlp.c_proj.weight", d, []int{4 * 768, 768}})
			}
			base := filepath.Join(t.TempDir(), "base")
			writeModel(t, base, [][]spec{specs}, 11)
			if err := os.WriteFile(filepath.Join(base, "config.json"), []byte(`{"model_type": "gpt2"}`), 0o644); err != nil {
				t.Fatal(err)
			}
			for k, p := range edges(d) {
				patchBits(t, base, specs[k%len(specs)].name, 1000*k+7, p)
			}
			mergeBothWays(t, base, adapterDir, specs, "-allow-missing")
		})
		t.Run("small/"+string(d), func(t *testing.T) {
			defer func(b int64) { mergeBlockElems = b }(mergeBlockElems)
			mergeBlockElems = 90
			var targets []spec
			base, adapterDir := smallSetup(t, func(s [][]spec) [][]spec {
				for _, sh := range s {
					for i := range sh {
						if strings.HasSuffix(sh[i].name, "proj.weight") {
							sh[i].dtype = d
							targets = append(targets, sh[i])
						}
					}
				}
				return s
			})
			for k, p := range edges(d) {
				patchBits(t, base, targets[k%len(targets)].name, 17*k+5, p)
			}
			mergeBothWays(t, base, adapterDir, targets)
		})
	}
}

// mergeBothWays merges the adapter into base kept and with -dtype f32, and
// checks that every tensor of targets (F16 or BF16 in the base) comes out
// kept as the float32 result rounded once to its dtype.
func mergeBothWays(t *testing.T, base, adapterDir string, targets []spec, args ...string) {
	t.Helper()
	dir := t.TempDir()
	kept, wide := filepath.Join(dir, "kept"), filepath.Join(dir, "f32")
	for _, run := range []struct {
		out   string
		dtype string
	}{{kept, "keep"}, {wide, "f32"}} {
		a := append([]string{"merge", "-base", base, "-adapter", adapterDir, "-out", run.out, "-dtype", run.dtype}, args...)
		before := halfBlocks.Load()
		if _, stderr, err := runCmd(t, a...); err != nil {
			t.Fatalf("merge -dtype %s: %v\n%s", run.dtype, err, stderr)
		}
		if n := halfBlocks.Load() - before; (n > 0) != (run.dtype == "keep") {
			t.Errorf("merge -dtype %s: %d blocks merged through a 16-bit W", run.dtype, n)
		}
	}
	mk, mw := openT(t, kept), openT(t, wide)
	defer mk.close()
	defer mw.close()
	rk, rw := &reader{m: mk}, &reader{m: mw}
	var want []byte
	for _, s := range targets {
		v, info := rw.values(t, s.name)
		if info.DType != peft.F32 {
			t.Fatalf("%s: -dtype f32 wrote %s", s.name, info.DType)
		}
		want = grow(want, len(v)*s.dtype.Size())
		peft.EncodeFloats(want, v, s.dtype)
		got, info := rk.bytes(t, s.name)
		if info.DType != s.dtype {
			t.Errorf("%s: kept as %s, want %s", s.name, info.DType, s.dtype)
			continue
		}
		bad := 0
		for i := 0; i < len(got); i += 2 {
			g, w := binary.LittleEndian.Uint16(got[i:]), binary.LittleEndian.Uint16(want[i:])
			if g != w {
				if bad++; bad <= 3 {
					t.Errorf("%s[%d]: %#04x, want %#04x: %v rounded to %s", s.name, i/2, g, w, v[i/2], s.dtype)
				}
			}
		}
		if bad > 3 {
			t.Errorf("%s: %d of %d elements differ", s.name, bad, len(got)/2)
		}
	}
}

// patchBits sets element i of the 16-bit float tensor called name in the
// model in dir to the pattern p, in place.
func patchBits(t *testing.T, dir, name string, i int, p uint16) {
	t.Helper()
	m := openT(t, dir)
	ref, ok := m.where[name]
	path := filepath.Join(m.dir, m.shards[ref.shard].name)
	m.close()
	if !ok || ref.info.DType.Size() != 2 || int64(i) >= ref.info.Elements() {
		t.Fatalf("no 16-bit tensor %q of more than %d elements in %s", name, i, dir)
	}
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(binary.LittleEndian.AppendUint16(nil, p), ref.info.Offset+2*int64(i)); err != nil {
		t.Fatal(err)
	}
}
