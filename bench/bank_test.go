package main

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestBankIDs checks the batches of the Bank table: every adapter present,
// runs of consecutive rows, and the random order a permutation of the runs.
func TestBankIDs(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, c := range []struct{ n, d int }{{16, 1}, {16, 8}, {16, 16}, {256, 64}, {256, 256}} {
		runs := bankIDs(rng, c.n, c.d, "runs")
		random := bankIDs(rng, c.n, c.d, "random")
		seen := map[int32]bool{}
		for i, id := range runs {
			if id < 0 || int(id) >= c.d || (i > 0 && id < runs[i-1]) {
				t.Fatalf("n=%d d=%d runs: ids[%d] = %d in %v", c.n, c.d, i, id, runs)
			}
			seen[id] = true
		}
		if len(seen) != c.d {
			t.Errorf("n=%d d=%d: %d adapters present", c.n, c.d, len(seen))
		}
		sorted := slices.Clone(random)
		slices.Sort(sorted)
		if !slices.Equal(sorted, runs) {
			t.Errorf("n=%d d=%d: random order is not a permutation of the runs", c.n, c.d)
		}
	}
}

// TestBankPeer runs bankPeer against a stand-in script that answers as
// peer_torch.py does, and checks the request it gets and the answer read.
func TestBankPeer(t *testing.T) {
	python, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("no python3")
	}
	dir := t.TempDir()
	script := filepath.Join(dir, "peer.py")
	err = os.WriteFile(script, []byte(`import json, sys
req = json.load(sys.stdin)
assert req["min_reps"] == 3 and len(req["bank"]) == 2
out = {"torch": "t", "device": "cpu", "threads": req["threads"], "blas": "b", "bank": []}
for sh in req["bank"]:
    row = {k: v for k, v in sh.items() if k != "ids"}
    row["mixed_s"] = 0.001 * len(sh["ids"]) + 0.1 * max(sh["ids"])
    out["bank"].append(row)
json.dump(out, sys.stdout)
`), 0o644)
	if err != nil {
		t.Fatal(err)
	}
	cfg := config{minTime: time.Millisecond, minReps: 3, peer: &peerConfig{name: "torch", python: python, script: script}}
	cases := []bankCase{
		{N: 2, In: 4, Out: 4, R: 1, Distinct: 2, Order: "runs", IDs: []int32{0, 1}},
		{N: 3, In: 4, Out: 4, R: 1, Distinct: 1, Order: "runs", IDs: []int32{0, 0, 0}},
	}
	secs, desc, err := bankPeer(cfg, cases)
	if err != nil {
		t.Fatal(err)
	}
	want := []float64{0.002 + 0.1, 0.003}
	for i := range want {
		if d := secs[i] - want[i]; d > 1e-12 || d < -1e-12 {
			t.Errorf("secs = %v, want %v", secs, want)
		}
	}
	if want := fmt.Sprintf("torch t on cpu, %d threads, BLAS b", runtime.GOMAXPROCS(0)); desc != want {
		t.Errorf("desc = %q, want %q", desc, want)
	}
}

// TestBankQuick runs the Bank table as -bank -quick does (its rows at
// n = 16 alone), but with in = out = 512 (the table's W of 4096 took 79 s
// on the CUDA emulator of make test-emu), and checks its rows and its
// progress: a plain line per step with the time left, then the time the
// run took.
func TestBankQuick(t *testing.T) {
	cfg := newConfig(true, false)
	cfg.minTime, cfg.minReps, cfg.maxReps = time.Millisecond, 2, 3
	cfg.bankIn = 512
	var out, progress bytes.Buffer
	if code := bankMain(cfg, &out, &progress); code != 0 {
		t.Fatalf("bankMain: exit status %d\n%s", code, progress.String())
	}
	rows := regexp.MustCompile(`(?m)^ +16 +\d+ +(random|runs) `).FindAllString(out.String(), -1)
	if len(rows) != 5 {
		t.Errorf("%d rows, want 5 at n = 16:\n%s", len(rows), out.String())
	}
	lines := strings.Split(strings.TrimSuffix(progress.String(), "\n"), "\n")
	step := regexp.MustCompile(`^\[(\d+)/6\] [^,]+, about (\d+ s|\d+ min \d\d s) left$`)
	if len(lines) != 7 || !strings.HasPrefix(lines[6], "measured in ") {
		t.Fatalf("progress:\n%s", progress.String())
	}
	for i, l := range lines[:6] {
		if m := step.FindStringSubmatch(l); m == nil || m[1] != fmt.Sprint(i+1) {
			t.Errorf("progress line %q, want [%d/6] what, about … left", l, i+1)
		}
	}
}
