package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/golora/lora/peft"
)

// fixtureDir is the PEFT adapter for GPT-2 in the repository's testdata
// (testdata/README.md says where it comes from).
const fixtureDir = "../../testdata/peft-gpt2-lora"

// fixture returns fixtureDir, failing the test if it is missing.
func fixture(t testing.TB) string {
	t.Helper()
	for _, f := range []string{peft.ConfigFile, peft.WeightsFile} {
		if _, err := os.Stat(filepath.Join(fixtureDir, f)); err != nil {
			t.Fatalf("the GPT-2 PEFT fixture is missing (%v): the tests need "+
				"testdata/peft-gpt2-lora of the repository", err)
		}
	}
	return fixtureDir
}

// spec is a tensor of a synthetic model.
type spec struct {
	name  string
	dtype peft.DType
	shape []int
}

// gpt2Specs returns the tensors of GPT-2 small as transformers saves a
// GPT2LMHeadModel (lm_head is tied to wte and not saved), with a vocabulary
// of vocab tokens, in two shards: the embeddings and blocks 0–5, then
// blocks 6–11 and the final norm. wpe is F16 and block 3's MLP output
// projection, a weight the adapter targets, is BF16; the rest is F32.
func gpt2Specs(vocab int) [2][]spec {
	const d = 768
	var shards [2][]spec
	shards[0] = []spec{
		{"transformer.wte.weight", peft.F32, []int{vocab, d}},
		{"transformer.wpe.weight", peft.F16, []int{1024, d}},
	}
	for i := range 12 {
		h := fmt.Sprintf("transformer.h.%d.", i)
		proj := peft.F32
		if i == 3 {
			proj = peft.BF16
		}
		block := []spec{
			{h + "ln_1.weight", peft.F32, []int{d}},
			{h + "ln_1.bias", peft.F32, []int{d}},
			{h + "attn.c_attn.weight", peft.F32, []int{d, 3 * d}},
			{h + "attn.c_attn.bias", peft.F32, []int{3 * d}},
			{h + "attn.c_proj.weight", peft.F32, []int{d, d}},
			{h + "attn.c_proj.bias", peft.F32, []int{d}},
			{h + "ln_2.weight", peft.F32, []int{d}},
			{h + "ln_2.bias", peft.F32, []int{d}},
			{h + "mlp.c_fc.weight", peft.F32, []int{d, 4 * d}},
			{h + "mlp.c_fc.bias", peft.F32, []int{4 * d}},
			{h + "mlp.c_proj.weight", proj, []int{4 * d, d}},
			{h + "mlp.c_proj.bias", peft.F32, []int{d}},
		}
		shards[i/6] = append(shards[i/6], block...)
	}
	shards[1] = append(shards[1],
		spec{"transformer.ln_f.weight", peft.F32, []int{d}},
		spec{"transformer.ln_f.bias", peft.F32, []int{d}})
	return shards
}

// rng is SplitMix64: fast, and the same numbers everywhere.
type rng struct{ s uint64 }

func (r *rng) next() uint64 {
	r.s += 0x9e3779b97f4a7c15
	z := r.s
	z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
	z = (z ^ z>>27) * 0x94d049bb133111eb
	return z ^ z>>31
}

// fill sets v to uniform values in (−0.1, 0.1).
func (r *rng) fill(v []float32) {
	for i := 0; i < len(v); i += 2 {
		x := r.next()
		v[i] = (float32(x>>40)/(1<<24)*2 - 1) / 10
		if i+1 < len(v) {
			v[i+1] = (float32(x&(1<<24-1))/(1<<24)*2 - 1) / 10
		}
	}
}

// writeModel writes a synthetic model of random weights into dir: one
// model.safetensors for one shard, or model-0000k-of-0000n.safetensors and
// model.safetensors.index.json for several, and a config.json.
func writeModel(t testing.TB, dir string, shards [][]spec, seed uint64) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	r := &rng{seed}
	weightMap := map[string]string{}
	var total int64
	for k, sh := range shards {
		name := "model.safetensors"
		if len(shards) > 1 {
			name = fmt.Sprintf("model-%05d-of-%05d.safetensors", k+1, len(shards))
		}
		infos := make([]peft.TensorInfo, len(sh))
		for i, s := range sh {
			infos[i] = peft.TensorInfo{Name: s.name, DType: s.dtype, Shape: s.shape}
			weightMap[s.name] = name
		}
		header, err := peft.EncodeHeader(infos, map[string]string{"format": "pt"})
		if err != nil {
			t.Fatal(err)
		}
		f, err := os.Create(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		w := bufio.NewWriterSize(f, 1<<20)
		w.Write(header)
		var vals []float32
		var buf []byte
		for _, ti := range infos {
			n := int(ti.Elements())
			total += ti.Length
			if !ti.DType.Float() {
				for range ti.Length {
					w.WriteByte(byte(r.next()))
				}
				continue
			}
			vals = grow(vals, n)
			buf = grow(buf, int(ti.Length))
			r.fill(vals)
			peft.EncodeFloats(buf, vals, ti.DType)
			w.Write(buf)
		}
		if err := w.Flush(); err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if len(shards) > 1 {
		ix := map[string]any{"metadata": map[string]any{"total_size": total}, "weight_map": weightMap}
		b, _ := json.MarshalIndent(ix, "", "  ")
		if err := os.WriteFile(filepath.Join(dir, indexName), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(`{"model_type": "synthetic"}`), 0o644); err != nil {
		t.Fatal(err)
	}
}

// reader reads tensors of a model into buffers it reuses.
type reader struct {
	m    *model
	raw  []byte
	vals []float32
}

// bytes returns the raw bytes of the tensor called name, valid until the
// next call.
func (r *reader) bytes(t testing.TB, name string) ([]byte, peft.TensorInfo) {
	t.Helper()
	ref, ok := r.m.where[name]
	if !ok {
		t.Fatalf("no tensor %q in %s", name, r.m.dir)
	}
	sec, err := r.m.shards[ref.shard].st.Section(name)
	if err != nil {
		t.Fatal(err)
	}
	r.raw = grow(r.raw, int(ref.info.Length))
	if _, err := sec.ReadAt(r.raw, 0); err != nil {
		t.Fatal(err)
	}
	return r.raw, ref.info
}

// values returns the tensor called name as float32, valid until the next
// call.
func (r *reader) values(t testing.TB, name string) ([]float32, peft.TensorInfo) {
	t.Helper()
	b, info := r.bytes(t, name)
	r.vals = grow(r.vals, int(info.Elements()))
	if err := peft.DecodeFloats(r.vals, b, info.DType); err != nil {
		t.Fatal(err)
	}
	return r.vals, info
}

// checkMerged compares a merged weight got with W + s·ΔW (ΔW = B·A, or its
// transpose when the module is transposed) computed in float64 from the
// base weight w, where an element the base holds as NaN or ±Inf must be
// kept as it is. The float32 arithmetic of a rank-r update rounds each of r
// products and sums and the final add; the bound allows (r+2) roundings of
// the magnitudes involved, plus the rounding to a narrower output dtype.
func checkMerged(t testing.TB, name string, got, w []float32, m *peft.Module, s float64, out peft.DType) {
	t.Helper()
	rows, cols := m.WeightShape()
	r := m.Rank
	const u = 0x1p-24
	var outU, outAbs float64 // relative and absolute rounding errors of the output dtype
	switch out {
	case peft.BF16:
		outU = 0x1p-8
	case peft.F16:
		outU, outAbs = 0x1p-11, 0x1p-25 // half the spacing of subnormals
	}
	// bt holds B·s as float64, transposed to r×out for a contiguous inner loop.
	bt := make([]float64, r*m.Out)
	for o := range m.Out {
		for k := range r {
			bt[k*m.Out+o] = s * float64(m.B[o*r+k])
		}
	}
	delta := make([]float64, m.Out)
	mag := make([]float64, m.Out)
	bad := 0
	for i := range m.In {
		clear(delta)
		clear(mag)
		for k := range r {
			a := float64(m.A[k*m.In+i])
			row := bt[k*m.Out : (k+1)*m.Out]
			for o, b := range row {
				delta[o] += a * b
				if p := a * b; p < 0 {
					mag[o] -= p
				} else {
					mag[o] += p
				}
			}
		}
		for o := range m.Out {
			at := o*m.In + i // W is out×in
			if m.Transposed() {
				at = i*m.Out + o // stored in×out
			}
			if x := float64(w[at]); x-x != 0 {
				// A NaN or ±Inf of the base stays as it is.
				if g := float64(got[at]); !(g == x || g != g && x != x) {
					if bad++; bad <= 3 {
						t.Errorf("%s [%d of %d×%d]: %v, want the base's %v kept", name, at, rows, cols, got[at], w[at])
					}
				}
				continue
			}
			want := float64(w[at]) + delta[o]
			tol := float64(r+2)*u*(abs(float64(w[at]))+mag[o]) + outU*abs(want) + outAbs
			if d := abs(float64(got[at]) - want); !(d <= tol) {
				if bad++; bad <= 3 {
					t.Errorf("%s [%d of %d×%d]: %v, want %v ± %.3g", name, at, rows, cols, got[at], want, tol)
				}
			}
		}
	}
	if bad > 3 {
		t.Errorf("%s: %d elements out of tolerance", name, bad)
	}
}

// abs is math.Abs without its unsafe conversion, which the race detector's
// pointer checks make slow in a loop.
func abs(x float64) float64 {
	if x < 0 {
		return -x
	}
	return x
}
