package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"

	"github.com/golora/lora"
	"github.com/golora/lora/internal/perf"
)

// TestRunSmall runs the whole bench on tiny shapes, with a bf16 Forward row
// at n = 1 and a bf16 Merge row, and checks the table and the JSON carry
// every row with sane figures and its dtype.
func TestRunSmall(t *testing.T) {
	cfg := smallConfig()
	rep, err := run(cfg, io.Discard, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Forward) != 5 || len(rep.Merge) != 2 || len(rep.Train) != 1 {
		t.Fatalf("%d forward, %d merge and %d training rows, want 5, 2 and 1", len(rep.Forward), len(rep.Merge), len(rep.Train))
	}
	if tr := rep.Train[0]; !(tr.BwdOver > 0) || !(tr.StepOver > 0) || tr.Step.Calls < 3 {
		t.Errorf("implausible training row %+v", tr)
	}
	var dtypes []string
	for _, r := range rep.Forward {
		dtypes = append(dtypes, fmt.Sprintf("n=%d r=%d %s", r.N, r.R, r.DType))
		if r.Fused.Calls < 3 || !(r.Overhead > 0) || r.Trainable != r.R*2*33 || r.Full != 33*33 {
			t.Errorf("implausible row %+v", r)
		}
		size := 4
		if r.DType == dtBF16 {
			size = 2
			if !(r.OverF32 > 0) || r.OverF32 != r.Fused.Median/rep.Forward[0].Fused.Median {
				t.Errorf("bf16 row: bf16/f32 %g, want its fused %g ÷ the f32 row's %g", r.OverF32, r.Fused.Median, rep.Forward[0].Fused.Median)
			}
		} else if r.OverF32 != 0 {
			t.Errorf("f32 row with a bf16/f32 ratio %g", r.OverF32)
		}
		if want := r.Shape.BytesOf(size, true) / r.Fused.Median / 1e9; math.Abs(r.GBs-want) > 1e-9*want {
			t.Errorf("%s row: %g GB/s, want %g (%d-byte W, x and y)", r.DType, r.GBs, want, size)
		}
	}
	if want := []string{"n=1 r=2 f32", "n=1 r=5 f32", "n=1 r=2 bf16", "n=20 r=2 f32", "n=20 r=5 f32"}; !slices.Equal(dtypes, want) {
		t.Errorf("forward rows %v, want %v", dtypes, want)
	}
	if m, h := rep.Merge[0], rep.Merge[1]; m.DType != dtF32 || h.DType != dtBF16 || !(h.OverF32 > 0) || h.OverF32 != h.Merge.Median/m.Merge.Median ||
		h.Stream.Calls != 0 || h.Merge.Calls < 3 || math.Abs(h.GBs-(4*33*33+4*3*66)/h.Merge.Median/1e9) > 1e-9*h.GBs {
		t.Errorf("merge rows %+v and %+v", m, h)
	}
	var out bytes.Buffer
	printTable(&out, rep)
	if !strings.Contains(out.String(), "overhead") || !strings.Contains(out.String(), "AdamW step") || strings.Count(out.String(), "\n") < 12 ||
		len(regexp.MustCompile(`(?m)^ +33 +\d+( +\d+)? +bf16 `).FindAllString(out.String(), -1)) != 2 || !strings.Contains(out.String(), "bf16/f32") {
		t.Errorf("table:\n%s", out.String())
	}
	js, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(js, &back); err != nil || len(back.Forward) != 5 || back.Forward[2].DType != dtBF16 || back.Forward[2].OverF32 != rep.Forward[2].OverF32 ||
		back.Merge[1].DType != dtBF16 || back.Forward[0].DType != dtF32 {
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
	rep, err := run(cfg, io.Discard, io.Discard)
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

// smallConfig is a run of a few tiny rows, fast enough for a test, with a
// bf16 Forward row and a bf16 Merge row.
func smallConfig() config {
	return config{
		ins: []int{33}, ranks: []int{2, 5}, ns: []int{1, 20}, mergeRanks: []int{3},
		bf16Forward: []perf.Shape{{N: 1, In: 33, R: 2}},
		bf16Merge:   []perf.Shape{{In: 33, R: 3}},
		train:       []perf.Shape{{N: 3, In: 33, Out: 29, R: 2}},
		minTime:     time.Millisecond, minReps: 3, maxReps: 5,
	}
}

// TestProgressPlain checks that, when stderr is not a terminal, progress is
// one plain line per step with the time left, and that neither it nor the
// table holds a carriage return or an escape sequence.
func TestProgressPlain(t *testing.T) {
	var out, progress bytes.Buffer
	cfg := smallConfig()
	if _, err := run(cfg, &out, &progress); err != nil {
		t.Fatal(err)
	}
	for name, b := range map[string][]byte{"progress": progress.Bytes(), "table": out.Bytes()} {
		for i, c := range b {
			if c < 0x20 && c != '\n' || c == 0x7f {
				t.Fatalf("%s holds control byte %#x at %d:\n%q", name, c, i, b)
			}
		}
	}
	lines := strings.Split(strings.TrimSuffix(progress.String(), "\n"), "\n")
	steps := 1 + len(cfg.ins)*len(cfg.ns) + len(cfg.ins)*len(cfg.mergeRanks) + len(cfg.train)
	if len(lines) != steps+1 {
		t.Fatalf("%d progress lines, want %d steps and a last line:\n%s", len(lines), steps, progress.String())
	}
	step := regexp.MustCompile(`^\[(\d+)/(\d+)\] [^,]+, about (\d+ s|\d+ min \d\d s) left$`)
	for i, l := range lines[:steps] {
		m := step.FindStringSubmatch(l)
		if m == nil || m[1] != fmt.Sprint(i+1) || m[2] != fmt.Sprint(steps) {
			t.Errorf("progress line %d is %q, want [%d/%d] what, about … left", i+1, l, i+1, steps)
		}
	}
	if !strings.HasPrefix(lines[steps], "measured in ") {
		t.Errorf("last progress line %q", lines[steps])
	}
}

// TestProgressTerminal checks the terminal form: the line is redrawn in
// place, and cleared before a table row is written to the same terminal.
func TestProgressTerminal(t *testing.T) {
	var b bytes.Buffer
	p := newProgress(&b, 2)
	p.term = true
	p.step("first", 0, 10)
	clearing{&b, p}.Write([]byte("row\n"))
	p.step("second", 10, 5)
	p.finish()
	want := "\r\033[K[1/2] first, about 10 s left\r\033[Krow\n\r\033[K[2/2] second, about "
	if !strings.HasPrefix(b.String(), want) {
		t.Errorf("terminal output %q, want it to start with %q", b.String(), want)
	}
	if !strings.HasSuffix(b.String(), "left\r\033[Kmeasured in 0 s\n") {
		t.Errorf("terminal output %q does not end by clearing the line", b.String())
	}
}

// TestTimeLeft checks the time left: the model's estimate of the steps to
// come, scaled by how much longer or shorter the finished steps took than
// estimated (damped by priorSecs of estimates).
func TestTimeLeft(t *testing.T) {
	clock := time.Unix(0, 0)
	var b bytes.Buffer
	p := newProgress(&b, 3)
	p.now = func() time.Time { return clock }
	p.step("a", 0, 30) // nothing finished: the estimate as it is
	clock = clock.Add(20 * time.Second)
	p.step("b", 10, 20) // 20 s for 10 estimated: 20·(20+5)/(10+5) = 33.3 s
	clock = clock.Add(100 * time.Second)
	p.step("c", 10, 10) // 120 s for 20: 10·125/25 = 50 s
	want := "[1/3] a, about 30 s left\n[2/3] b, about 33 s left\n[3/3] c, about 50 s left\n"
	if b.String() != want {
		t.Errorf("progress\n%s\nwant\n%s", b.String(), want)
	}
	for sec, want := range map[float64]string{0: "0 s", 59.4: "59 s", 59.6: "1 min 00 s", 185: "3 min 05 s"} {
		if got := duration(sec); got != want {
			t.Errorf("duration(%g) = %q, want %q", sec, got, want)
		}
	}
}

// TestRowsPrintedAsMeasured checks that each step's rows are on stdout
// before the next step begins, and not before they are measured.
func TestRowsPrintedAsMeasured(t *testing.T) {
	var out bytes.Buffer
	seen := map[string]string{} // progress line → the table printed by then
	progress := writerFunc(func(b []byte) (int, error) {
		seen[strings.TrimSpace(string(b))] = out.String()
		return len(b), nil
	})
	cfg := smallConfig()
	if _, err := run(cfg, &out, progress); err != nil {
		t.Fatal(err)
	}
	row := func(in, r, n int) *regexp.Regexp {
		return regexp.MustCompile(fmt.Sprintf(`(?m)^ +%d +%d +%d  `, in, r, n))
	}
	at := func(prefix string) string {
		for l, table := range seen {
			if strings.HasPrefix(l, prefix) {
				return table
			}
		}
		t.Fatalf("no progress line %q…", prefix)
		return ""
	}
	n1, n20, merge, train := at("[2/5] forward in=out=33 n=1"), at("[3/5] forward in=out=33 n=20"), at("[4/5] merge"), at("[5/5] training")
	if !strings.Contains(n1, "host cost") || strings.Contains(n1, "Forward:") {
		t.Errorf("before the first Forward row, the table is\n%s", n1)
	}
	for _, r := range cfg.ranks {
		if !row(33, r, 1).MatchString(n20) || row(33, r, 20).MatchString(n20) {
			t.Errorf("when the n=20 step begins, the table is\n%s\nwant the n=1 rows and no n=20 row", n20)
		}
		if !row(33, r, 20).MatchString(merge) {
			t.Errorf("when the merge step begins, the table is\n%s\nwant every Forward row", merge)
		}
	}
	if !regexp.MustCompile(`(?m)^ +33 +3  `).MatchString(train) || strings.Contains(train, "Training:") {
		t.Errorf("when the training step begins, the table is\n%s\nwant the Merge row and no Training row", train)
	}
	if !strings.Contains(out.String(), "Training:") || !regexp.MustCompile(`(?m)^ +33 +2 +3  `).MatchString(out.String()) {
		t.Errorf("final table\n%s", out.String())
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(b []byte) (int, error) { return f(b) }

// TestUnstable checks which spreads make a time unstable: the interquartile
// range over 50 % of the median, or, for results saved without quartiles,
// the fastest-to-slowest range.
func TestUnstable(t *testing.T) {
	for _, c := range []struct {
		name     string
		s        Stat
		unstable bool
		shown    string
	}{
		{"tight", Stat{Median: 1e-3, Q1: 0.95e-3, Q3: 1.05e-3, Min: 0.9e-3, Max: 1.2e-3}, false, "1.00ms ±5%"},
		{"50% exactly", Stat{Median: 2, Q1: 1.5, Q3: 2.5}, false, "2.00s ±25%"},
		{"51%", Stat{Median: 2, Q1: 1.5, Q3: 2.52}, true, "2.00s ±26%"},
		{"one slow batch beyond the quartiles", Stat{Median: 1e-6, Q1: 0.99e-6, Q3: 1.01e-6, Min: 0.98e-6, Max: 430e-6}, false, "1.0µs ±1%"},
		{"saved without quartiles, narrow", Stat{Median: 1, Min: 0.8, Max: 1.2}, false, "1.00s ±20%"},
		{"saved without quartiles, ±21499%", Stat{Median: 1e-3, Min: 0.9e-3, Max: 431e-3}, true, "1.00ms ±21505%"},
		{"zero median", Stat{}, true, ""},
		{"NaN median", Stat{Median: math.NaN(), Q1: 1, Q3: 1}, true, ""},
		{"negative median", Stat{Median: -1, Q1: -1, Q3: -1}, true, ""},
	} {
		if got := c.s.unstable(); got != c.unstable {
			t.Errorf("%s: unstable() = %v, want %v", c.name, got, c.unstable)
		}
		if c.shown != "" && c.s.String() != c.shown {
			t.Errorf("%s: shown as %q, want %q", c.name, c.s.String(), c.shown)
		}
	}
}

// stat is a time with the given median and interquartile spread.
func stat(median, spread float64) Stat {
	return Stat{Median: median, Q1: median * (1 - spread/2), Q3: median * (1 + spread/2),
		Min: median * (1 - spread), Max: median * (1 + spread), Calls: 10, Batch: 2}
}

// TestUnstableRowsFlagged checks that a row with an unstable time is printed
// with its key columns and a note to re-run, none of its figures, and that
// the threshold is stated under every table.
func TestUnstableRowsFlagged(t *testing.T) {
	shape := func(n, r int) perf.Shape { return perf.Shape{N: n, In: 4096, Out: 4096, R: r} }
	good, bad := stat(366.77e-3, 0.04), stat(0.1234567, 2.1)
	rep := &Report{
		Machine: map[string]string{"backend": "cpu"},
		Host:    HostCost{Shape: shape(1, 16), PerCall: 2e-6},
		Forward: []ForwardRow{
			{Shape: shape(256, 8), Base: good, Fused: good, Unfused: good, Merged: good, Overhead: 1.008, UnfusedOver: 1.034, GFLOPs: 23.3, GBs: 0.2, Trainable: 65536, TrainableShare: 0.0039},
			{Shape: shape(256, 16), Base: good, Fused: bad, Unfused: good, Merged: good, Overhead: 9.876, UnfusedOver: 1.007, GFLOPs: 23.1, GBs: 0.2, Trainable: 131072, TrainableShare: 0.0078},
		},
		Merge: []MergeRow{
			{In: 4096, Out: 4096, R: 8, Merge: good, Stream: good, GBs: 19.3, StreamGBs: 18.5, Ratio: 0.96},
			{In: 4096, Out: 4096, R: 16, Merge: good, Stream: bad, GBs: 16.9, StreamGBs: 19.9, Ratio: 1.18},
		},
		Train: []TrainRow{
			{Shape: shape(16, 16), Forward: good, Backward: good, NoDX: good, Step: bad, BwdOver: 0.477, NoDXOver: 0.045, StepOver: 0.0101, GFLOPs: 48},
		},
	}
	var out bytes.Buffer
	printTable(&out, rep)
	text := out.String()
	for _, c := range []struct{ name, line, note string }{
		{"forward", "4096   16   256    f32", "fused 210%"},
		{"merge", "4096   16    f32", "stream 210%"},
		{"training", "4096   16    16", "AdamW step 210%"},
	} {
		var got string
		for _, l := range strings.Split(text, "\n") {
			if strings.HasPrefix(strings.TrimSpace(l), c.line+"  unstable") {
				got = l
			}
		}
		if got == "" || !strings.Contains(got, "re-run") || !strings.Contains(got, c.note) {
			t.Errorf("%s: no unstable line for %q naming %q in\n%s", c.name, c.line, c.note, text)
		}
		for _, figure := range []string{"123.46ms", "366.77ms", "9.876", "16.9", "×"} {
			if strings.Contains(got, figure) {
				t.Errorf("%s: the unstable row shows the figure %s: %q", c.name, figure, got)
			}
		}
	}
	if !strings.Contains(text, "1.008×") || !strings.Contains(text, "366.77ms ±2%") || !strings.Contains(text, "0.96×") {
		t.Errorf("the stable rows lost their figures:\n%s", text)
	}
	if n := strings.Count(text, "Over 50%, the row is unstable"); n != 3 {
		t.Errorf("the threshold is stated under %d tables, want 3:\n%s", n, text)
	}
	for _, want := range []string{"1 of 2 rows unstable", "1 of 1 rows unstable"} {
		if !strings.Contains(text, want) {
			t.Errorf("no %q under a table:\n%s", want, text)
		}
	}
}

// TestTableAligned checks that every line of a table, its heading included,
// has its columns at the same places whatever the widths of the figures,
// since rows are printed before the later ones are known.
func TestTableAligned(t *testing.T) {
	shape := func(in, n, r int) perf.Shape { return perf.Shape{N: n, In: in, Out: in, R: r} }
	rep := &Report{Machine: map[string]string{"backend": "cpu"}}
	for i, med := range []float64{1.2e-6, 143.1e-6, 20.42e-3, 366.77e-3, 12.5} {
		in := []int{64, 1024, 4096, 16384, 65536}[i]
		s := stat(med, 0.5)
		rep.Forward = append(rep.Forward, ForwardRow{Shape: shape(in, 1<<i, 1<<(2*i)), Base: s, Fused: s, Unfused: s, Merged: s,
			Overhead: 1 + float64(i), UnfusedOver: 10 * float64(i), GFLOPs: math.Pow(10, float64(i)), GBs: math.Pow(10, float64(i-1)),
			Trainable: 1 << (6 * i), TrainableShare: 0.0001 * math.Pow(10, float64(i))})
		rep.Merge = append(rep.Merge, MergeRow{In: in, Out: in, R: 1 << (2 * i), Merge: s, Stream: s,
			GBs: math.Pow(10, float64(i-1)), StreamGBs: 3, Ratio: float64(i)})
	}
	var out bytes.Buffer
	printTable(&out, rep)
	for _, section := range []string{"Forward:", "Merge:"} {
		_, rest, _ := strings.Cut(out.String(), section)
		lines := strings.Split(rest, "\n")
		var table []string
		for _, l := range lines {
			if strings.HasPrefix(l, "  ") {
				table = append(table, l)
			} else if len(table) > 0 {
				break
			}
		}
		if len(table) != 6 {
			t.Fatalf("%s %d table lines, want a heading and 5 rows:\n%s", section, len(table), out.String())
		}
		ends := func(l string) []int { // rune offsets where a column ends
			var e []int
			r := []rune(l + " ")
			for i := 1; i < len(r); i++ {
				if r[i] == ' ' && r[i-1] != ' ' {
					e = append(e, i)
				}
			}
			return e
		}
		want := ends(table[0])
		for _, l := range table[1:] {
			got := ends(l)
			// A cell such as "143.1µs ±25%" ends twice: keep the ends at the heading's columns.
			var at []int
			for _, w := range want {
				if slices.Contains(got, w) {
					at = append(at, w)
				}
			}
			if !slices.Equal(at, want) {
				t.Errorf("%s row\n%q\nends its columns at %v, the heading at %v:\n%s", section, l, got, want, strings.Join(table, "\n"))
			}
		}
	}
}

// TestPeerColumns runs the bench with a stand-in for the PyTorch script
// that answers fixed times, and checks each row gets the peer's time for
// its own shape and the table labels them as PyTorch's.
func TestPeerColumns(t *testing.T) {
	cfg := smallConfig()
	forward, merge, train := peerShapes(cfg)
	type row struct {
		peerShape
		Unmerged float64 `json:"unmerged_s,omitempty"`
		Merged   float64 `json:"merged_s,omitempty"`
		Merge    float64 `json:"merge_s,omitempty"`
		Train    float64 `json:"train_s,omitempty"`
	}
	ans := map[string]any{"torch": "9.9", "device": "cpu", "threads": 2, "blas": "fake"}
	var fw, mg, tr []row
	// The answer lists the shapes in reverse: rows are matched by shape.
	// bf16 shapes answer half the time of their f32 ones.
	half := func(s peerShape) float64 {
		if s.DType == dtBF16 {
			return 0.5
		}
		return 1
	}
	for i, s := range slices.Backward(forward) {
		fw = append(fw, row{peerShape: s, Unmerged: float64(s.N*s.R) * 1e-3 * half(s), Merged: float64(i+1) * 1e-3})
	}
	for _, s := range slices.Backward(merge) {
		mg = append(mg, row{peerShape: s, Merge: float64(s.R) * 1e-3 * half(s)})
	}
	for _, s := range train {
		tr = append(tr, row{peerShape: s, Train: 5e-3, Unmerged: 2e-3})
	}
	ans["forward"], ans["merge"], ans["train"] = fw, mg, tr
	dir := t.TempDir()
	js, err := json.Marshal(ans)
	if err != nil {
		t.Fatal(err)
	}
	answer := filepath.Join(dir, "answer.json")
	script := filepath.Join(dir, "peer.sh")
	if err := os.WriteFile(answer, js, 0o644); err != nil {
		t.Fatal(err)
	}
	request := filepath.Join(dir, "request.json")
	if err := os.WriteFile(script, []byte("cat >'"+request+"'; cat '"+answer+"'\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg.peer, err = newPeer("torch", "sh", script)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	rep, err := run(cfg, &out, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rep.Forward {
		want := float64(r.N*r.R) * 1e-3 * half(peerShape{DType: r.DType})
		if r.PeerUnmerged != want || r.OverPeerUnm != r.Fused.Median/want {
			t.Errorf("forward n=%d r=%d %s: peer %g (fused/peer %g), want %g", r.N, r.R, r.DType, r.PeerUnmerged, r.OverPeerUnm, want)
		}
	}
	if r := rep.Merge[0]; r.PeerMerge != 3e-3 {
		t.Errorf("merge r=3: peer %g, want 3e-3", r.PeerMerge)
	}
	if r := rep.Merge[1]; r.DType != dtBF16 || r.PeerMerge != 1.5e-3 {
		t.Errorf("merge r=3 %s: peer %g, want bf16's 1.5e-3", r.DType, r.PeerMerge)
	}
	if r := rep.Train[0]; math.Abs(r.PeerBackward-3e-3) > 1e-15 {
		t.Errorf("training: peer backward %g, want 5e-3 - 2e-3", r.PeerBackward)
	}
	if rep.Machine["peer"] != "torch 9.9 on cpu, 2 threads, BLAS fake" {
		t.Errorf("machine's peer %q", rep.Machine["peer"])
	}
	text := out.String()
	for _, want := range []string{"PyTorch unmerged", "merged/PyTorch", "PyTorch merge", "backward/PyTorch", "the way PEFT does"} {
		if !strings.Contains(text, want) {
			t.Errorf("table lacks %q:\n%s", want, text)
		}
	}
	if strings.Contains(text, "peer") && !strings.Contains(text, "peer_torch.py") {
		t.Errorf("the table still says peer:\n%s", text)
	}

	// A training row whose peer backward came out at zero or below (its
	// forward and backward no slower than its forward alone): fillTrain
	// leaves it without a figure, and the table shows empty cells there,
	// not a time of zero and a ratio of zero.
	pt := &peerTimes{train: map[peerShape]float64{}}
	tr0 := rep.Train[0]
	tr0.PeerBackward, tr0.OverPeer = 0, 0
	pt.train[peerShape{N: tr0.N, In: tr0.In, Out: tr0.Out, R: tr0.R}] = max(1e-3-2e-3, 0)
	pt.fillTrain(&tr0)
	if tr0.PeerBackward != 0 || tr0.OverPeer != 0 {
		t.Errorf("training: peer backward %g (ratio %g) from a negative difference", tr0.PeerBackward, tr0.OverPeer)
	}
	none := *rep
	none.Train = []TrainRow{tr0}
	out.Reset()
	printTable(&out, &none)
	for _, line := range strings.Split(out.String(), "\n") {
		if regexp.MustCompile(fmt.Sprintf(`^ +%d +%d +%d `, tr0.In, tr0.R, tr0.N)).MatchString(line) &&
			(strings.Contains(line, " 0.0µs") || strings.Contains(line, "0.00×")) {
			t.Errorf("a training row without a peer figure prints one:\n%s", line)
		}
	}

	// The bf16 shapes are asked for in bf16: their dtype is in the request.
	var bf16 []string
	for _, s := range append(forward, merge...) {
		if s.DType != "" {
			bf16 = append(bf16, fmt.Sprintf("%s n=%d r=%d", s.DType, s.N, s.R))
		}
	}
	if want := []string{"bf16 n=1 r=2", "bf16 n=0 r=3"}; !slices.Equal(bf16, want) {
		t.Errorf("bf16 shapes asked of the peer %v, want %v", bf16, want)
	}
	if req, err := os.ReadFile(request); err != nil || strings.Count(string(req), `"dtype":"bf16"`) != 2 || strings.Contains(string(req), `"dtype":"f32"`) {
		t.Errorf("request %s (%v): want two bf16 shapes, f32 ones without a dtype", req, err)
	}

	// An answer without a shape asked for is refused.
	ans["merge"] = mg[2:]
	js, _ = json.Marshal(ans)
	if err := os.WriteFile(answer, js, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := run(cfg, io.Discard, io.Discard); err == nil || !strings.Contains(err.Error(), "no time for in=33 out=33 r=3") {
		t.Errorf("answer without the merge row: %v", err)
	}
}

// savedReport is a report shaped as the saved results: ranks 8, 16 and 64,
// n from 1 to 256, the peer's columns, and the machine of a CPU run; and
// bf16 rows at in = out = 4096, r = 16: Forward at n = 1, 16 and 64, Merge.
func savedReport(blas string) *Report {
	rep := &Report{Machine: map[string]string{"backend": "cpu", "cpu": "AMD EPYC", "blas": blas}}
	for _, in := range []int{1024, 4096} {
		for _, n := range []int{1, 16, 64, 256} {
			for i, r := range []int{8, 16, 64} {
				base := 1e-4 * float64(n*in/1024)
				rep.Forward = append(rep.Forward, ForwardRow{Shape: perf.Shape{N: n, In: in, Out: in, R: r}, DType: dtF32,
					Base: stat(base, 0.1), Fused: stat(base*(1+0.1*float64(i)), 0.1), Unfused: stat(base*1.1, 0.1), Merged: stat(base, 0.1),
					Overhead: 1 + 0.1*float64(i), PeerUnmerged: 2 * base, PeerMerged: 1.5 * base})
			}
			if in == 4096 && n <= 64 {
				base := 0.6e-4 * float64(n*in/1024)
				rep.Forward = append(rep.Forward, ForwardRow{Shape: perf.Shape{N: n, In: in, Out: in, R: 16}, DType: dtBF16,
					Base: stat(base, 0.1), Fused: stat(base*1.1, 0.1), Unfused: stat(base*1.2, 0.1), Merged: stat(base, 0.1),
					Overhead: 1.1, OverF32: 0.6, PeerUnmerged: 3 * base, PeerMerged: 2 * base})
			}
		}
		for i, r := range []int{8, 16, 64} {
			rep.Merge = append(rep.Merge, MergeRow{In: in, Out: in, R: r, DType: dtF32, Merge: stat(1e-3, 0.1), Stream: stat(1e-3, 0.1),
				GBs: 28.7 - 12*float64(i), StreamGBs: 25, PeerMerge: 0.3})
			if in == 4096 && r == 16 {
				rep.Merge = append(rep.Merge, MergeRow{In: in, Out: in, R: r, DType: dtBF16, Merge: stat(0.6e-3, 0.1),
					GBs: 14, OverF32: 0.6, PeerMerge: 0.2})
			}
		}
	}
	return rep
}

// TestFigures checks what the figures say: log axes ticked and labelled at
// the data, linear axes with enough labelled ticks to read values, a time
// axis labelled in units, the peer named as PyTorch computing as PEFT, the
// BLAS in the title, and the legend outside the data area.
func TestFigures(t *testing.T) {
	for _, blas := range []struct{ impl, name string }{{"gonum.Implementation", "gonum"}, {"netlib.Implementation", "OpenBLAS"}} {
		figs := figures(savedReport(blas.impl))
		var names []string
		for _, nf := range figs {
			names = append(names, nf.file)
		}
		if !slices.Equal(names, []string{"forward-1024.png", "forward-4096.png", "overhead.png", "merge.png"}) {
			t.Fatalf("figures %v", names)
		}
		dir := t.TempDir()
		for _, nf := range figs {
			f := nf.f
			if err := f.save(filepath.Join(dir, nf.file)); err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(f.p.Title.Text, "cpu backend, "+blas.name+")") {
				t.Errorf("%s: title %q does not name the BLAS %s", nf.file, f.p.Title.Text, blas.name)
			}
			labels := func(ax plot.Axis) []string {
				var l []string
				for _, tk := range ax.Tick.Marker.Ticks(ax.Min, ax.Max) {
					if tk.Label != "" && tk.Value >= ax.Min && tk.Value <= ax.Max {
						l = append(l, tk.Label)
					}
				}
				return l
			}
			x, y := labels(f.p.X), labels(f.p.Y)
			wantX := []string{"8", "16", "64"}
			if strings.HasPrefix(nf.file, "forward") {
				wantX = []string{"1", "16", "64", "256"}
			}
			if !slices.Equal(x, wantX) {
				t.Errorf("%s: x ticks labelled %v, want %v", nf.file, x, wantX)
			}
			if len(y) < 4 || len(slices.Compact(slices.Clone(y))) != len(y) {
				t.Errorf("%s: y ticks labelled %v, want at least 4 distinct labels", nf.file, y)
			}
			// The data lie within the labelled ticks.
			if f.p.Y.Tick.Marker.Ticks(f.p.Y.Min, f.p.Y.Max)[0].Value > f.p.Y.Min*(1+1e-9) {
				t.Errorf("%s: no tick at the bottom of the y axis (%g)", nf.file, f.p.Y.Min)
			}
			// The plot's own legend, drawn over the data area, is empty: the
			// legend is drawn beside the plot.
			if w := f.p.Legend.Rectangle(draw.New(vgimg.New(figWidth, figHeight))).Size().X; w != 0 {
				t.Errorf("%s: a legend %v wide is drawn inside the plot", nf.file, w)
			}
			var legend []string
			legend = append(legend, f.order...)
			for _, e := range f.extra {
				legend = append(legend, e.name)
			}
			all := strings.Join(legend, "\n")
			if strings.Contains(strings.ToLower(all), "peer") || nf.file != "overhead.png" && !strings.Contains(all, "PyTorch") || !strings.Contains(all, "as PEFT") && nf.file != "overhead.png" {
				t.Errorf("%s: legend %q", nf.file, legend)
			}
		}
		// bf16 beside f32 where it was measured, and only there.
		for i, want := range []bool{false, true, false, true} {
			all := strings.Join(figs[i].f.order, "\n")
			if strings.Contains(all, "bf16") != want {
				t.Errorf("%s: legend %q, want bf16 series %v", figs[i].file, figs[i].f.order, want)
			}
		}
		if got := figs[1].f.series[seriesFusedBF16]; len(got) != 3 || got[0].X != 1 || got[0].Y != 0.6e-4*4*1.1 {
			t.Errorf("forward-4096.png: bf16 fused series %v", got)
		}
		if got := figs[3].f.series["merge bf16, 4096×4096"]; len(got) != 1 || got[0].X != 16 || got[0].Y != 14 {
			t.Errorf("merge.png: bf16 merge series %v", got)
		}
		if got := figs[3].f.series["PyTorch merge (as PEFT) bf16, 4096×4096"]; len(got) != 1 || math.Abs(got[0].Y-2*4096*4096*2/0.2/1e9) > 1e-9 {
			t.Errorf("merge.png: PyTorch bf16 merge series %v, want 2-byte elements", got)
		}
		if y := figs[0].f.p.Y; !slices.Contains(labels(y), "100 µs") || !slices.Contains(labels(y), "1 ms") {
			t.Errorf("forward-1024.png: time axis labelled %v, want 100 µs, 1 ms, …", labels(y))
		}
		if y := figs[3].f.p.Y; !slices.Equal(labels(y), []string{"0", "5", "10", "15", "20", "25", "30"}) {
			t.Errorf("merge.png: y axis labelled %v", labels(y))
		}
	}
}

func labels(ax plot.Axis) []string {
	var l []string
	for _, tk := range ax.Tick.Marker.Ticks(ax.Min, ax.Max) {
		if tk.Label != "" && tk.Value >= ax.Min && tk.Value <= ax.Max {
			l = append(l, tk.Label)
		}
	}
	return l
}

// TestTicks checks the tickers on their own.
func TestTicks(t *testing.T) {
	for _, c := range []struct {
		lo, hi float64
		want   []string
	}{
		{0, 28.7, []string{"0", "5", "10", "15", "20", "25"}},
		{0.99, 1.46, []string{"1.0", "1.1", "1.2", "1.3", "1.4"}},
		{0.95, 1.25, []string{"0.95", "1.00", "1.05", "1.10", "1.15", "1.20", "1.25"}},
		{0, 1, []string{"0.0", "0.2", "0.4", "0.6", "0.8", "1.0"}},
		{-3, 7, []string{"-2", "0", "2", "4", "6"}},
		{0, 20, []string{"0.0", "2.5", "5.0", "7.5", "10.0", "12.5", "15.0", "17.5", "20.0"}},
		{0, 25, []string{"0", "5", "10", "15", "20", "25"}},
	} {
		var got []string
		for _, tk := range (niceTicks{}).Ticks(c.lo, c.hi) {
			got = append(got, tk.Label)
		}
		if !slices.Equal(got, c.want) {
			t.Errorf("niceTicks(%g, %g) = %v, want %v", c.lo, c.hi, got, c.want)
		}
	}
	var got []string
	for _, tk := range (timeTicks{}).Ticks(2e-6, 0.5) {
		if tk.Label != "" {
			got = append(got, tk.Label)
		}
	}
	if want := []string{"10 µs", "100 µs", "1 ms", "10 ms", "100 ms"}; !slices.Equal(got, want) {
		t.Errorf("timeTicks over 5 decades labels %v, want %v", got, want)
	}
	got = nil
	for _, tk := range (timeTicks{}).Ticks(2e-3, 0.5) {
		if tk.Label != "" {
			got = append(got, tk.Label)
		}
	}
	if want := []string{"2 ms", "5 ms", "10 ms", "20 ms", "50 ms", "100 ms", "200 ms", "500 ms"}; !slices.Equal(got, want) {
		t.Errorf("timeTicks(2ms, 0.5s) labels %v, want %v", got, want)
	}
	if got := dataTicks([]float64{64, 8, 16, 8}); len(got) != 3 || got[0].Label != "8" || got[2].Label != "64" {
		t.Errorf("dataTicks = %v", got)
	}
	for v, want := range map[float64][2]float64{2.07e-3: {2e-3, 5e-3}, 0.37: {0.2, 0.5}, 1: {1, 1}, 7.1e-5: {5e-5, 1e-4}} {
		if d, u := down125(v), up125(v); math.Abs(d-want[0]) > 1e-12*want[0] || math.Abs(u-want[1]) > 1e-12*want[1] {
			t.Errorf("down125, up125(%g) = %g, %g, want %v", v, d, u, want)
		}
	}
}

// TestDTypeColumn prints a report with bf16 rows, and one saved before rows
// had a dtype: the first has the dtype column and the bf16/f32 ratio beside
// the bf16 rows alone ("unstable" where the f32 time is); the second reads
// as f32, without the ratio column.
func TestDTypeColumn(t *testing.T) {
	var out bytes.Buffer
	saved := savedReport("gonum.Implementation")
	for i, r := range saved.Forward {
		if r.In == 4096 && r.N == 16 && r.R == 16 && r.DType == dtF32 {
			saved.Forward[i].Fused = stat(r.Fused.Median, 2) // the ratio at n = 16 means nothing
		}
	}
	printTable(&out, saved)
	text := out.String()
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`(?m)^ +4096 +16 +16 +bf16 .* unstable `),
		regexp.MustCompile(`(?m)^ +4096 +16 +1 +bf16 .* 0\.600× `),
		regexp.MustCompile(`(?m)^ +4096 +16 +64 +bf16 .* 0\.600× `),
		regexp.MustCompile(`(?m)^ +4096 +16 +bf16 .* 0\.600× `),
		regexp.MustCompile(`(?m)^ +in=out +r +n +dtype .* bf16/f32 `),
		regexp.MustCompile(`(?m)^ +in=out +r +dtype .* bf16/f32 `),
	} {
		if !want.MatchString(text) {
			t.Errorf("no line matching %s in\n%s", want, text)
		}
	}
	if n := strings.Count(text, "×"); n == 0 || regexp.MustCompile(`(?m)^ +\d+ +\d+ +\d+ +f32 .*0\.600×`).MatchString(text) {
		t.Errorf("an f32 row has a bf16/f32 ratio:\n%s", text)
	}

	// Saved before the dtype: "dtype" absent from the JSON.
	old := []byte(`{"machine": {"backend": "cpu"}, "forward": [{"N": 1, "In": 64, "Out": 64, "R": 4,
		"base": {"median_s": 1e-3, "min_s": 1e-3, "max_s": 1e-3}, "fused": {"median_s": 1e-3, "min_s": 1e-3, "max_s": 1e-3},
		"unfused": {"median_s": 1e-3, "min_s": 1e-3, "max_s": 1e-3}, "merged": {"median_s": 1e-3, "min_s": 1e-3, "max_s": 1e-3}}],
		"merge": [{"In": 64, "Out": 64, "R": 4, "merge": {"median_s": 1e-3, "min_s": 1e-3, "max_s": 1e-3},
		"stream": {"median_s": 1e-3, "min_s": 1e-3, "max_s": 1e-3}}]}`)
	rep, err := loadReport(old)
	if err != nil {
		t.Fatal(err)
	}
	out.Reset()
	printTable(&out, rep)
	text = out.String()
	if !regexp.MustCompile(`(?m)^ +64 +4 +1 +f32 `).MatchString(text) || !regexp.MustCompile(`(?m)^ +64 +4 +f32 `).MatchString(text) || strings.Contains(text, "bf16") {
		t.Errorf("a report saved without dtypes:\n%s", text)
	}
	if js, err := json.Marshal(rep); err != nil || strings.Count(string(js), `"dtype":"f32"`) != 2 {
		t.Errorf("re-saved: %s (%v)", js, err)
	}
}

// TestHalfProblem checks the bf16 rows compute what the f32 rows do: the
// unfused path and Forward agree on a bf16 layer, up to bf16's rounding of
// y, and Merge then Unmerge comes back within bf16's rounding of W.
func TestHalfProblem(t *testing.T) {
	s := perf.Shape{N: 7, In: 45, Out: 31, R: 4}
	p, err := perf.NewProblemOf(lora.BF16, s, 1) // one layer: Forward and Unfused on the same W
	if err != nil {
		t.Fatal(err)
	}
	defer p.Free()
	if p.X.DType() != lora.BF16 || p.Y.DType() != lora.BF16 || p.Layers[0].W().DType() != lora.BF16 || p.Layers[0].A().DType() != lora.F32 {
		t.Fatalf("dtypes x %v, y %v, W %v, A %v, want bf16 and A f32", p.X.DType(), p.Y.DType(), p.Layers[0].W().DType(), p.Layers[0].A().DType())
	}
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
	// y is rounded to bf16 (relative 2⁻⁹) once by Forward and twice by the
	// unfused path, whose x·Wᵀ is rounded before the adapter's term is
	// added: within 2⁻⁷ of the larger magnitude involved (|y| is about
	// 0.03·√45, the adapter's term 2·0.03²·√45·√4 smaller).
	for i := range fused {
		if d := math.Abs(float64(fused[i] - unfused[i])); d > 0x1p-7*(0.25+math.Abs(float64(fused[i]))) {
			t.Fatalf("y[%d]: fused %g, unfused %g", i, fused[i], unfused[i])
		}
	}
	if perf.CopiesOf(perf.Shape{N: 1, In: 4096, Out: 4096, R: 16}, 2) < perf.Copies(perf.Shape{N: 1, In: 4096, Out: 4096, R: 16}) {
		t.Error("fewer bf16 copies of W than f32 ones: W would stay in cache")
	}
	// W, x and y in bf16 and the float32 A and B: 2·(31·45 + 7·45 + 7·31)
	// + 4·4·(45 + 31) bytes moved by a Forward, 2·2·31·45 + 4·4·(45 + 31)
	// by a Merge.
	if got, want := s.BytesOf(2, true), float64(2*(31*45+7*45+7*31)+4*4*(45+31)); got != want {
		t.Errorf("bytes of a bf16 Forward %g, want %g", got, want)
	}
	if got, want := s.MergeBytesOf(2), float64(2*2*31*45+4*4*(45+31)); got != want {
		t.Errorf("bytes of a bf16 Merge %g, want %g", got, want)
	}
}
