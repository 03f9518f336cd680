package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golora/lora"
	"github.com/golora/lora/peft"
)

// gpt2Vocab is the synthetic GPT-2's vocabulary: smaller than GPT-2's 50257,
// to keep the test fast; every shape the adapter touches is GPT-2's.
const gpt2Vocab = 2048

var (
	gpt2Once sync.Once
	gpt2Dir  string
	gpt2Err  error
)

// gpt2Base returns a synthetic GPT-2 small, sharded in two, written once
// for the whole test run.
func gpt2Base(t *testing.T) string {
	gpt2Once.Do(func() {
		gpt2Dir, gpt2Err = os.MkdirTemp("", "lora-gpt2-base-")
		if gpt2Err != nil {
			return
		}
		specs := gpt2Specs(gpt2Vocab)
		writeModel(t, gpt2Dir, specs[:], 1)
	})
	if gpt2Err != nil {
		t.Fatal(gpt2Err)
	}
	return gpt2Dir
}

// childArgs names the environment variable that makes the test binary run
// the command itself, with the JSON array of arguments it holds: how tests
// run the command in a child process of its own.
const childArgs = "LORA_TEST_COMMAND_ARGS"

// childHWM names the environment variable that makes such a child print,
// last on stderr, hwmPrefix and its peak resident memory in KiB (VmHWM).
const (
	childHWM  = "LORA_TEST_PRINT_HWM"
	hwmPrefix = "peak resident KiB: "
)

// childHold names the environment variable that makes such a child, once
// it has written its first output shard, create the file it names and
// wait there, until a signal ends it.
const childHold = "LORA_TEST_HOLD_AFTER_SHARD"

func TestMain(m *testing.M) {
	if v := os.Getenv(childArgs); v != "" {
		var args []string
		if err := json.Unmarshal([]byte(v), &args); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(3)
		}
		if marker := os.Getenv(childHold); marker != "" {
			shardWritten = func() {
				if err := os.WriteFile(marker, nil, 0o644); err != nil {
					fmt.Fprintln(os.Stderr, err)
					os.Exit(3)
				}
				for {
					time.Sleep(time.Hour)
				}
			}
		}
		code := report(run(args, os.Stdout, os.Stderr), os.Stderr)
		if os.Getenv(childHWM) != "" {
			// The child's own peak: its rusage would count the parent's
			// memory too, which the child shares until it execs.
			if b, err := os.ReadFile("/proc/self/status"); err == nil {
				for _, l := range strings.Split(string(b), "\n") {
					if v, ok := strings.CutPrefix(l, "VmHWM:"); ok {
						fmt.Fprintf(os.Stderr, "%s%s\n", hwmPrefix, strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
					}
				}
			}
		}
		os.Exit(code)
	}
	code := m.Run()
	if gpt2Dir != "" {
		os.RemoveAll(gpt2Dir)
	}
	os.Exit(code)
}

// runCmd runs the command line and returns its stdout and stderr.
func runCmd(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	err := run(args, &stdout, &stderr)
	return stdout.String(), stderr.String(), err
}

// TestMergeGPT2 merges the real GPT-2 adapter into a synthetic GPT-2, in
// two shards with an F16 and a BF16 tensor, keeping the dtypes, then again
// converting to bfloat16.
//
// It moves 350 MB several times over: under the race detector or the
// emulated GPU that takes minutes, so there it is skipped, and
// TestMergeSharded, which takes the same paths with small shapes, stands in.
func TestMergeGPT2(t *testing.T) {
	adapterDir := fixture(t)
	if raceEnabled || lora.Backend() == "cudaemu" {
		t.Skip("350 MB through the race detector or the emulated GPU is too slow; TestMergeSharded covers the same paths")
	}
	base := gpt2Base(t)
	ad, err := peft.Load(adapterDir)
	if err != nil {
		t.Fatal(err)
	}
	baseFiles := snapshot(t, base)

	out := filepath.Join(t.TempDir(), "merged")
	stdout, stderr, err := runCmd(t, "merge", "-base", base, "-adapter", adapterDir, "-out", out)
	if err != nil {
		t.Fatalf("merge: %v\n%s", err, stderr)
	}
	if !strings.Contains(stdout, "merged 36 modules, replaced 0 tensors, converted 0, copied 112") ||
		!strings.Contains(stdout, "GB/s") {
		t.Errorf("summary:\n%s", stdout)
	}
	if !strings.Contains(stderr, "100%") || !strings.Contains(stderr, "148/148 tensors") {
		t.Errorf("progress:\n%s", stderr)
	}
	in := openT(t, base)
	defer in.close()
	got := openT(t, out)
	defer got.close()
	checkLayout(t, in, got)

	targets := map[string]*peft.Module{}
	for _, m := range ad.Modules {
		targets[m.Weight()] = m
	}
	rin, rout := &reader{m: in}, &reader{m: got}
	for name, ref := range in.where {
		if m := targets[name]; m != nil {
			w, _ := rin.values(t, name)
			merged, info := rout.values(t, name)
			if info.DType != ref.info.DType {
				t.Errorf("%s: dtype %s, want %s", name, info.DType, ref.info.DType)
			}
			checkMerged(t, name, merged, w, m, 4, info.DType)
			continue
		}
		a, _ := rin.bytes(t, name)
		b, _ := rout.bytes(t, name)
		if !bytes.Equal(a, b) {
			t.Errorf("%s: not copied byte for byte", name)
		}
	}
	if got := snapshot(t, base); !mapsEqual(got, baseFiles) {
		t.Error("the base model changed")
	}
	if cfg, err := os.ReadFile(filepath.Join(out, "config.json")); err != nil || !strings.Contains(string(cfg), "synthetic") {
		t.Errorf("config.json not copied: %v", err)
	}

	// The same, to bfloat16: every tensor is the bfloat16 nearest the
	// float32 result above, so a merged weight is rounded once.
	out16 := filepath.Join(t.TempDir(), "merged-bf16")
	stdout, stderr, err = runCmd(t, "merge", "-base", base, "-adapter", adapterDir, "-out", out16, "-dtype", "bf16")
	if err != nil {
		t.Fatalf("merge -dtype bf16: %v\n%s", err, stderr)
	}
	if !strings.Contains(stdout, "merged 36 modules, replaced 0 tensors, converted 112, copied 0") {
		t.Errorf("summary:\n%s", stdout)
	}
	got16 := openT(t, out16)
	defer got16.close()
	checkLayout(t, in, got16)
	r16 := &reader{m: got16}
	var want []byte
	for name := range in.where {
		v, _ := rout.values(t, name) // the float32 (or kept) result
		want = grow(want, 2*len(v))
		peft.EncodeFloats(want, v, peft.BF16)
		b, info := r16.bytes(t, name)
		if info.DType != peft.BF16 {
			t.Errorf("%s: dtype %s, want BF16", name, info.DType)
		}
		if !bytes.Equal(b, want) {
			t.Errorf("%s: not the float32 result rounded once to bfloat16", name)
		}
	}
}

func openT(t *testing.T, path string) *model {
	t.Helper()
	m, err := openModel(path)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// checkLayout checks that out has in's files, tensors, shapes and index,
// with total_size the bytes of out's tensors.
func checkLayout(t *testing.T, in, out *model) {
	t.Helper()
	if len(in.shards) != len(out.shards) {
		t.Fatalf("%d shards, want %d", len(out.shards), len(in.shards))
	}
	var total int64
	for i, s := range in.shards {
		o := out.shards[i]
		if o.name != s.name {
			t.Errorf("shard %d is %s, want %s", i, o.name, s.name)
		}
		if len(o.st.Tensors()) != len(s.st.Tensors()) {
			t.Errorf("%s: %d tensors, want %d", o.name, len(o.st.Tensors()), len(s.st.Tensors()))
		}
		for _, ti := range s.st.Tensors() {
			oi, ok := o.st.Tensor(ti.Name)
			if !ok || !slices.Equal(oi.Shape, ti.Shape) {
				t.Errorf("%s: %s missing or reshaped", o.name, ti.Name)
			}
			total += oi.Length
		}
		if o.st.Metadata()["format"] != "pt" {
			t.Errorf("%s: metadata %v", o.name, o.st.Metadata())
		}
	}
	if in.index == nil {
		return
	}
	if out.index == nil {
		t.Fatal("no index written")
	}
	if !mapsEqual(in.index.weightMap, out.index.weightMap) {
		t.Error("weight_map changed")
	}
	var size int64
	if err := json.Unmarshal(out.index.metadata["total_size"], &size); err != nil || size != total {
		t.Errorf("total_size %d (%v), want %d", size, err, total)
	}
}

func mapsEqual[M ~map[K]V, K, V comparable](a, b M) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// snapshot returns every file of dir with its size and modification time.
func snapshot(t *testing.T, dir string) map[string]string {
	t.Helper()
	s := map[string]string{}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		fi, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		s[e.Name()] = fmt.Sprint(fi.ModTime(), fi.Size())
	}
	return s
}
