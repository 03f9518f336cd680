package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/golora/lora/peft"
)

// TestIndex200k reads indexes of 200,000 entries, which a quadratic pass
// over the shard names would take minutes over: one whose every tensor
// names a shard of its own, none of which exists (an error naming the
// first), and a valid one whose tensors are spread over two shards.
func TestIndex200k(t *testing.T) {
	const n = 200_000
	dir := t.TempDir()
	wm := make(map[string]string, n)
	for i := range n {
		wm[fmt.Sprintf("t.%d", i)] = fmt.Sprintf("model-%06d.safetensors", i)
	}
	writeIndex(t, dir, wm)
	_, err := openModel(dir)
	if err == nil || !strings.Contains(err.Error(), "model-000000.safetensors") {
		t.Errorf("error %v, want one naming model-000000.safetensors", err)
	}

	dir = t.TempDir()
	var shards [2][]peft.Tensor
	for i := range n {
		name := fmt.Sprintf("t.%d", i)
		shard := fmt.Sprintf("model-%05d-of-00002.safetensors", i%2+1)
		wm[name] = shard
		shards[i%2] = append(shards[i%2], peft.Tensor{Name: name, DType: peft.U8, Shape: []int{1}, Data: []byte{byte(i)}})
	}
	for k, ts := range shards {
		f, err := os.Create(filepath.Join(dir, fmt.Sprintf("model-%05d-of-00002.safetensors", k+1)))
		if err != nil {
			t.Fatal(err)
		}
		if err := peft.WriteSafetensors(f, ts, nil); err != nil {
			t.Fatal(err)
		}
		f.Close()
	}
	writeIndex(t, dir, wm)
	m, err := openModel(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer m.close()
	if len(m.where) != n || len(m.shards) != 2 {
		t.Fatalf("%d tensors in %d shards, want %d in 2", len(m.where), len(m.shards), n)
	}
	for _, i := range []int{0, 1, 12345, n - 1} {
		name := fmt.Sprintf("t.%d", i)
		ref, _, ok := m.find(name)
		if !ok || m.shards[ref.shard].name != wm[name] {
			t.Errorf("%s: in %v, want %s", name, ref, wm[name])
		}
	}
}

func writeIndex(t *testing.T, dir string, wm map[string]string) {
	t.Helper()
	b, err := json.Marshal(map[string]any{"metadata": map[string]any{}, "weight_map": wm})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, indexName), b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestMergeUnlistedTensor merges a sharded model whose index leaves out a
// tensor that a shard holds: the tensor is written, and listed in the
// output's index under its shard, with a warning that names it, as inspect
// does; the output's index lists every tensor of its shards.
func TestMergeUnlistedTensor(t *testing.T) {
	base, adapterDir := smallSetup(t, nil)
	const name, shard = "model.norm.weight", "model-00002-of-00002.safetensors"
	wm := map[string]string{}
	m := openT(t, base)
	maps.Copy(wm, m.index.weightMap)
	m.close()
	delete(wm, name)
	writeIndex(t, base, wm)

	stdout, _, err := runCmd(t, "inspect", base)
	if err != nil {
		t.Fatal(err)
	}
	warning := shard + " holds tensor " + name + ", which the index's weight_map does not list"
	if !strings.Contains(stdout, "warning: "+warning) {
		t.Errorf("inspect does not warn %q:\n%s", warning, stdout)
	}
	out := filepath.Join(t.TempDir(), "out")
	_, stderr, err := runCmd(t, "merge", "-base", base, "-adapter", adapterDir, "-out", out)
	if err != nil {
		t.Fatalf("%v\n%s", err, stderr)
	}
	if !strings.Contains(stderr, "lora merge: warning: "+warning+": written, and listed in the output's index") {
		t.Errorf("merge does not warn %q:\n%s", warning, stderr)
	}
	got := openT(t, out)
	defer got.close()
	if f := got.index.weightMap[name]; f != shard {
		t.Errorf("the output's index puts %s in %q, want %s", name, f, shard)
	}
	if len(got.index.unlisted) != 0 || len(got.index.weightMap) != len(got.where) {
		t.Errorf("the output's index lists %d tensors of %d, leaving out %v", len(got.index.weightMap), len(got.where), got.index.unlisted)
	}
	in := openT(t, base)
	defer in.close()
	a, _ := (&reader{m: in}).bytes(t, name)
	a = append([]byte(nil), a...)
	if b, _ := (&reader{m: got}).bytes(t, name); !bytes.Equal(a, b) {
		t.Errorf("%s not copied byte for byte", name)
	}
}
