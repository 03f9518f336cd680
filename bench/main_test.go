package main

import (
	"bytes"
	"encoding/json"
	"io"
	"math"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/golora/lora/internal/perf"
)

// TestRunSmall runs the whole bench on tiny shapes and checks the table and
// the JSON carry every row with sane figures.
func TestRunSmall(t *testing.T) {
	cfg := config{
		ins: []int{33}, ranks: []int{2, 5}, ns: []int{1, 20}, mergeRanks: []int{3},
		train:   []perf.Shape{{N: 3, In: 33, Out: 29, R: 2}},
		minTime: time.Millisecond, minReps: 3, maxReps: 5,
	}
	rep, err := run(cfg, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Forward) != 4 || len(rep.Merge) != 1 || len(rep.Train) != 1 {
		t.Fatalf("%d forward, %d merge and %d training rows, want 4, 1 and 1", len(rep.Forward), len(rep.Merge), len(rep.Train))
	}
	if tr := rep.Train[0]; !(tr.BwdOver > 0) || !(tr.StepOver > 0) || tr.Step.Calls < 3 {
		t.Errorf("implausible training row %+v", tr)
	}
	for _, r := range rep.Forward {
		if r.Fused.Calls < 3 || !(r.Overhead > 0) || r.Trainable != r.R*2*33 || r.Full != 33*33 {
			t.Errorf("implausible row %+v", r)
		}
	}
	var out bytes.Buffer
	printTable(&out, rep)
	if !strings.Contains(out.String(), "overhead") || !strings.Contains(out.String(), "AdamW step") || strings.Count(out.String(), "\n") < 12 {
		t.Errorf("table:\n%s", out.String())
	}
	js, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(js, &back); err != nil || len(back.Forward) != 4 {
		t.Fatalf("JSON round trip: %v", err)
	}
}

// TestUnfusedMatchesForward checks the bench's unfused baseline computes the
// same layer as Forward, so that the two are compared like for like.
func TestUnfusedMatchesForward(t *testing.T) {
	s := perf.Shape{N: 7, In: 45, Out: 31, R: 4}
	p, err := perf.NewProblem(s, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Free()
	get := func() []float32 {
		out := make([]float32, s.N*s.Out)
		if err := p.Y.Read(out); err != nil {
			t.Fatal(err)
		}
		return out
	}
	if err := p.Forward(); err != nil {
		t.Fatal(err)
	}
	fused := get()
	if err := p.Unfused(); err != nil {
		t.Fatal(err)
	}
	unfused := get()
	for i := range fused {
		if d := math.Abs(float64(fused[i] - unfused[i])); d > 1e-5*(1+math.Abs(float64(fused[i]))) {
			t.Fatalf("y[%d]: fused %g, unfused %g", i, fused[i], unfused[i])
		}
	}
}

// TestPlots draws the figures of a tiny run and checks each is a PNG file.
func TestPlots(t *testing.T) {
	cfg := config{
		ins: []int{24, 40}, ranks: []int{1, 4}, ns: []int{1, 3}, mergeRanks: []int{2, 4},
		minTime: time.Millisecond, minReps: 2, maxReps: 3,
	}
	rep, err := run(cfg, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	files, err := writePlots(t.TempDir(), rep)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 4 {
		t.Fatalf("wrote %v, want forward-24, forward-40, overhead and merge", files)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.HasPrefix(b, []byte("\x89PNG\r\n\x1a\n")) || len(b) < 1000 {
			t.Errorf("%s is not a plausible PNG (%d bytes)", f, len(b))
		}
	}
}
