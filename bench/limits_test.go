package main

import (
	"bytes"
	"fmt"
	"io"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestFMAKernel checks the FMA loop runs every round on every lane of its
// 12 accumulators: from 0, n rounds of acc·1 + 1 leave n, and of acc·2 + 1
// leave 2ⁿ − 1 (both exact in float32 for the n taken).
func TestFMAKernel(t *testing.T) {
	run, name, flop := fmaKernel()
	if run == nil {
		t.Logf("no FMA kernel on this build: the FMA rate is not measured")
		return
	}
	lanes := flop / 24
	for _, c := range []struct {
		m      float32
		rounds int
		want   float32
	}{{1, 1000, 1000}, {1, 1, 1}, {2, 10, 1023}, {1, 0, 0}} {
		acc := run(c.m, 1, c.rounds)
		if len(acc) != 12*lanes {
			t.Fatalf("%s: %d accumulators' lanes, want 12×%d", name, len(acc), lanes)
		}
		for i, v := range acc {
			if v != c.want {
				t.Fatalf("%s, %d rounds of acc·%g + 1: lane %d holds %g, want %g", name, c.rounds, c.m, i, v, c.want)
			}
		}
	}
}

// TestSumKernel checks the streaming sum against a plain sum of small
// integers (exact in float32), over lengths of one and several rounds.
func TestSumKernel(t *testing.T) {
	sum := sumKernel()
	if sum == nil {
		t.Fatal("no streaming sum")
	}
	for _, n := range []int{64, 128, 64 * 37} {
		p := make([]float32, n)
		want := float32(0)
		for i := range p {
			p[i] = float32(i%7) - 2
			want += p[i]
		}
		if got := sum(p); got != want {
			t.Errorf("sum of %d: %g, want %g", n, got, want)
		}
	}
}

// TestMeasureLimits measures both limits on a small buffer and checks
// they are plausible and described in the machine's heading.
func TestMeasureLimits(t *testing.T) {
	lim := measureLimits(8<<20, 5*time.Millisecond)
	if _, _, flop := fmaKernel(); flop > 0 && !(lim.FLOPs > 1e8 && lim.FLOPs < 1e14) {
		t.Errorf("FMA rate %g FLOP/s", lim.FLOPs)
	}
	if !(lim.ReadBW > 1e8 && lim.ReadBW < 1e13) || lim.ReadBytes < 8<<20-64*4*lim.Threads || lim.ReadBytes > 8<<20 {
		t.Errorf("read bandwidth %g B/s over %d bytes", lim.ReadBW, lim.ReadBytes)
	}
	m := map[string]string{}
	lim.describe(m)
	if m["limit: read"] == "" || lim.FLOPs > 0 && m["limit: fma"] == "" {
		t.Errorf("described as %v", m)
	}
}

// TestLimitShare checks which limit a Forward row is judged by: the read
// bandwidth on W's bytes (of its dtype) at n ≤ 4, the FMA rate above.
func TestLimitShare(t *testing.T) {
	lim := Limits{FLOPs: 100e9, ReadBW: 10e9}
	r := ForwardRow{DType: dtF32, Fused: Stat{Median: 1e-3}, GFLOPs: 80}
	r.N, r.In, r.Out = 1, 1000, 1000
	if got := lim.share(r); got != 4e6/1e-3/10e9 {
		t.Errorf("f32 n=1: %g, want W's 4 MB in 1 ms of 10 GB/s", got)
	}
	r.DType = dtBF16
	if got := lim.share(r); got != 2e6/1e-3/10e9 {
		t.Errorf("bf16 n=1: %g, want W's 2 MB in 1 ms of 10 GB/s", got)
	}
	r.N = 16
	if got := lim.share(r); got != 0.8 {
		t.Errorf("n=16: %g, want 80 GFLOP/s of 100", got)
	}
	if got := (Limits{ReadBW: 10e9}).share(r); got != 0 {
		t.Errorf("n=16 without an FMA rate: %g", got)
	}
}

// TestRunLimits runs a small bench measuring the limits, and checks the
// heading names them and each Forward row carries its share, printed in
// the %limit column.
func TestRunLimits(t *testing.T) {
	cfg := smallConfig()
	cfg.limits, cfg.limitRead, cfg.fmaTime = true, 4<<20, 2*time.Millisecond
	var out bytes.Buffer
	rep, err := run(cfg, &out, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if !(rep.Limits.ReadBW > 0) || rep.Machine["limit: read"] == "" {
		t.Fatalf("limits %+v, machine %v", rep.Limits, rep.Machine)
	}
	for _, r := range rep.Forward {
		if want := rep.Limits.share(r); r.LimitShare != want || r.N > limitN && rep.Limits.FLOPs > 0 && !(want > 0) {
			t.Errorf("n=%d r=%d %s: share %g, want %g", r.N, r.R, r.DType, r.LimitShare, want)
		}
	}
	if text := out.String(); !strings.Contains(text, "%limit") || !strings.Contains(text, "limit: read") {
		t.Errorf("table:\n%s", text)
	}
	// Printed again with stable times (a test's tiny rows seldom are), each
	// row's share follows its GB/s.
	for i := range rep.Forward {
		r := &rep.Forward[i]
		r.Base, r.Fused, r.Unfused, r.Merged = stat(1e-3, 0.1), stat(1e-3, 0.1), stat(1e-3, 0.1), stat(1e-3, 0.1)
	}
	var again bytes.Buffer
	printTable(&again, rep)
	for _, r := range rep.Forward {
		cells := regexp.QuoteMeta(fmt.Sprintf("%.1f", r.GBs)) + " +" + regexp.QuoteMeta(percentCell(r.LimitShare)) + " "
		if r.LimitShare > 0 && !regexp.MustCompile(cells).MatchString(again.String()) {
			t.Errorf("n=%d r=%d %s: no %s after its GB/s %.1f:\n%s", r.N, r.R, r.DType, percentCell(r.LimitShare), r.GBs, again.String())
		}
	}
}
