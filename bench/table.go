package main

import (
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"unicode/utf8"
)

// unstablePercent is the spread, in percent of the median, above which a
// time is no figure: when the middle half of an operation's batches spans
// more than half its median, the median depends on which batches happened
// to be slow, and the row is printed as unstable, without figures.
const unstablePercent = 50

// spreadPercent is s's spread in percent of its median, rounded: the
// interquartile range of the batches, or, for results saved without
// quartiles, the range from the fastest to the slowest batch.
func (s Stat) spreadPercent() float64 {
	if !(s.Median > 0) {
		return math.Inf(1)
	}
	lo, hi := s.Q1, s.Q3
	if lo == 0 && hi == 0 {
		lo, hi = s.Min, s.Max
	}
	return math.Round(100 * (hi - lo) / s.Median)
}

// unstable reports whether s's spread makes its median meaningless.
func (s Stat) unstable() bool { return !(s.spreadPercent() <= unstablePercent) }

// hasQuartiles reports whether s was measured with its quartiles.
func (s Stat) hasQuartiles() bool { return s.Q1 != 0 || s.Q3 != 0 }

// named is an operation's time with the name a row gives it.
type named struct {
	name string
	s    Stat
}

// unstableNote returns the note that replaces a row's figures when one of
// its times is unstable, naming each unstable time and its spread, or ""
// when every time is stable.
func unstableNote(stats ...named) string {
	var bad []string
	for _, n := range stats {
		if n.s.unstable() {
			bad = append(bad, fmt.Sprintf("%s %.0f%%", n.name, n.s.spreadPercent()))
		}
	}
	if len(bad) == 0 {
		return ""
	}
	return fmt.Sprintf("unstable, re-run: spread %s (over %d%%)", strings.Join(bad, ", "), unstablePercent)
}

// column is a column of a table printed a row at a time: its heading, and a
// width that holds every value the column is expected to show, so that rows
// printed before the later ones are known stay aligned.
type column struct {
	head  string
	width int
}

// table prints rows as they come, each cell right-aligned in its column.
type table struct {
	w        io.Writer
	cols     []column
	keys     int // the leading columns that name a row, kept on unstable rows
	rows     int
	unstable int
	oldStats bool // some time was saved without quartiles
}

func newTable(w io.Writer, keys int, cols []column) *table {
	for i, c := range cols {
		cols[i].width = max(c.width, utf8.RuneCountInString(c.head))
	}
	t := &table{w: w, cols: cols, keys: keys}
	heads := make([]string, len(cols))
	for i, c := range cols {
		heads[i] = c.head
	}
	t.line(heads, "")
	return t
}

// line prints cells right-aligned in their columns, then note, if any.
func (t *table) line(cells []string, note string) {
	var b strings.Builder
	for i, c := range cells {
		b.WriteString("  ")
		b.WriteString(strings.Repeat(" ", max(0, t.cols[i].width-utf8.RuneCountInString(c))))
		b.WriteString(c)
	}
	if note != "" {
		b.WriteString("  ")
		b.WriteString(note)
	}
	b.WriteString("\n")
	io.WriteString(t.w, b.String())
}

// row prints one row: its figures, or, when one of stats is unstable, its
// key cells and a note in place of the figures.
func (t *table) row(cells []string, stats ...named) {
	t.rows++
	for _, n := range stats {
		if !n.s.hasQuartiles() {
			t.oldStats = true
		}
	}
	if note := unstableNote(stats...); note != "" {
		t.unstable++
		t.line(cells[:t.keys], note)
		return
	}
	t.line(cells, "")
}

// end prints, below the table, how the spread is measured, the threshold
// above which a row is unstable, and how many rows that left without figures.
func (t *table) end() {
	spread := "the interquartile range of the batches"
	if t.oldStats {
		spread = "the fastest-to-slowest range of the batches (saved without quartiles)"
	}
	fmt.Fprintf(t.w, "Spread = %s ÷ the median, ± half of it. Over %d%%, the row is unstable and its figures not shown: re-run on a quiet machine.\n",
		spread, unstablePercent)
	if t.unstable > 0 {
		fmt.Fprintf(t.w, "%d of %d rows unstable.\n", t.unstable, t.rows)
	}
}

// printer prints the report's sections, a row at a time, with the same
// columns whether the rows come as they are measured or from saved results.
type printer struct {
	w       io.Writer
	gpu     bool // device times, wall and %peak columns
	peer    bool // the PyTorch columns
	half    bool // the bf16/f32 column: there are bf16 rows
	limits  bool // the %limit column: the machine's limits were measured
	section string
	t       *table
}

// machine prints the heading: the machine's description and the host cost.
func (p *printer) machine(m map[string]string, host HostCost) {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	fmt.Fprintln(p.w, "lora benchmark")
	for _, k := range keys {
		fmt.Fprintf(p.w, "  %-16s %s\n", k, m[k])
	}
	fmt.Fprintf(p.w, "  %-16s %s per Forward call (n=%d, in=out=%d, r=%d: the host's share)\n",
		"host cost", ms(host.PerCall), host.N, host.In, host.R)
}

// open ends the table being printed, if it is another section's, and
// starts this one with its heading lines and columns.
func (p *printer) open(section string, heading []string, keys int, cols []column) {
	if p.section == section {
		return
	}
	p.end()
	p.section = section
	fmt.Fprintln(p.w)
	for _, h := range heading {
		fmt.Fprintln(p.w, h)
	}
	p.t = newTable(p.w, keys, cols)
}

// end finishes the table being printed.
func (p *printer) end() {
	if p.t != nil {
		p.t.end()
		p.t = nil
	}
}

// peerNote explains the peer columns.
const peerNote = "PyTorch = the same layer computed by PyTorch the way PEFT does (bench/peer_torch.py), timed in the same run; ratios below 1× are faster."

// Widths of the columns' values: a time with its spread ("366.77ms ±25%"),
// a time, a ratio.
const (
	statW  = 13
	timeW  = 9
	ratioW = 8
)

func (p *printer) forward(rows ...ForwardRow) {
	if len(rows) == 0 {
		return
	}
	heading := []string{
		"Forward: y = x·Wᵀ + s·(x·Aᵀ)·Bᵀ, W out×in, x n×in. Median time per call ± half its spread.",
		"overhead = fused ÷ base; unfused = x·Wᵀ, x·Aᵀ, ·Bᵀ and an add as separate steps; merged = Forward after Merge.",
	}
	if p.gpu {
		heading = append(heading, "Times are device times (CUDA events around back-to-back calls); wall = fused wall time per call, host included.")
	}
	if p.half {
		heading = append(heading, "dtype = of W, x and y (A and B are float32 in every row, as PEFT keeps them); bf16/f32 = the bf16 fused Forward ÷ the f32 one, timed in the same rounds.")
	}
	if p.limits {
		heading = append(heading, fmt.Sprintf("%%limit = the fused Forward's share of this machine's limit in the heading: the read bandwidth on W's bytes at n ≤ %d, the float32 FMA rate above.", limitN))
	}
	if p.peer {
		heading = append(heading, peerNote)
	}
	cols := []column{{"in=out", 6}, {"r", 3}, {"n", 4}, {"dtype", 5}, {"base", statW}, {"fused", statW}, {"unfused", statW}, {"merged", statW},
		{"overhead", ratioW}, {"unfused/base", ratioW}}
	if p.half {
		cols = append(cols, column{"bf16/f32", ratioW})
	}
	cols = append(cols, column{"GFLOP/s", 7}, column{"GB/s", 6})
	if p.limits {
		cols = append(cols, column{"%limit", 6})
	}
	if p.gpu {
		cols = append(cols, column{"%peak", 5}, column{"wall", timeW})
	}
	if p.peer {
		cols = append(cols, column{"PyTorch unmerged", timeW}, column{"PyTorch merged", timeW},
			column{"fused/PyTorch", ratioW}, column{"merged/PyTorch", ratioW})
	}
	cols = append(cols, column{"trainable", 18})
	p.open("forward", heading, 4, cols)
	for _, r := range rows {
		cells := []string{fmt.Sprint(r.In), fmt.Sprint(r.R), fmt.Sprint(r.N), rowDType(r.DType),
			r.Base.String(), r.Fused.String(), r.Unfused.String(), r.Merged.String(),
			fmt.Sprintf("%.3f×", r.Overhead), fmt.Sprintf("%.3f×", r.UnfusedOver)}
		if p.half {
			f32 := slices.IndexFunc(rows, func(f ForwardRow) bool {
				return f.Shape == r.Shape && rowDType(f.DType) == dtF32
			})
			cells = append(cells, ratioCell(r.OverF32, f32 >= 0 && rows[f32].Fused.unstable()))
		}
		cells = append(cells, fmt.Sprintf("%.1f", r.GFLOPs), fmt.Sprintf("%.1f", r.GBs))
		if p.limits {
			cells = append(cells, percentCell(r.LimitShare))
		}
		if p.gpu {
			cells = append(cells, fmt.Sprintf("%.0f%%", 100*r.PeakShare), ms(r.Fused.Wall))
		}
		if p.peer {
			cells = append(cells, peerCell(r.PeerUnmerged), peerCell(r.PeerMerged),
				peerRatioCell(r.OverPeerUnm), peerRatioCell(r.OverPeerMerge))
		}
		cells = append(cells, fmt.Sprintf("%d (%.2f%%)", r.Trainable, 100*r.TrainableShare))
		p.t.row(cells, named{"base", r.Base}, named{"fused", r.Fused}, named{"unfused", r.Unfused}, named{"merged", r.Merged})
	}
}

func (p *printer) merge(rows ...MergeRow) {
	if len(rows) == 0 {
		return
	}
	var heading []string
	if p.gpu {
		heading = append(heading, "Merge: W ← W ± s·B·A in place (Merge and Unmerge alternate); GB/s counts W read and written once.")
	} else {
		heading = append(heading, "Merge: W ← W ± s·B·A in place (Merge and Unmerge alternate). stream = one single-threaded pass w[i] *= c over a W of the same size.")
	}
	if p.half {
		heading = append(heading, "dtype = of W (A and B float32); bf16/f32 = the bf16 Merge ÷ the f32 one, timed in the same rounds.")
	}
	if p.peer {
		heading = append(heading, "PyTorch merge = W.add_(s * (B @ A)), PEFT's merge, timed in the same run.")
	}
	cols := []column{{"in=out", 6}, {"r", 3}, {"dtype", 5}, {"merge", statW}, {"GB/s", 6}}
	if p.gpu {
		cols = append(cols, column{"%peak", 5})
	} else {
		cols = append(cols, column{"stream", statW}, column{"GB/s", 6}, column{"merge/stream", ratioW})
	}
	if p.half {
		cols = append(cols, column{"bf16/f32", ratioW})
	}
	if p.peer {
		cols = append(cols, column{"PyTorch merge", timeW}, column{"merge/PyTorch", ratioW})
	}
	p.open("merge", heading, 3, cols)
	for _, r := range rows {
		cells := []string{fmt.Sprint(r.In), fmt.Sprint(r.R), rowDType(r.DType), r.Merge.String(), fmt.Sprintf("%.1f", r.GBs)}
		stats := []named{{"merge", r.Merge}}
		switch {
		case p.gpu:
			cells = append(cells, fmt.Sprintf("%.0f%%", 100*r.PeakShare))
		case r.Stream.Median > 0:
			cells = append(cells, r.Stream.String(), fmt.Sprintf("%.1f", r.StreamGBs), fmt.Sprintf("%.2f×", r.Ratio))
			stats = append(stats, named{"stream", r.Stream})
		default: // a bf16 row: no streaming pass of its own
			cells = append(cells, "", "", "")
		}
		if p.half {
			f32 := slices.IndexFunc(rows, func(f MergeRow) bool {
				return f.In == r.In && f.Out == r.Out && f.R == r.R && rowDType(f.DType) == dtF32
			})
			cells = append(cells, ratioCell(r.OverF32, f32 >= 0 && rows[f32].Merge.unstable()))
		}
		if p.peer {
			cells = append(cells, peerCell(r.PeerMerge), peerRatioCell(r.OverPeer))
		}
		p.t.row(cells, stats...)
	}
}

func (p *printer) train(rows ...TrainRow) {
	if len(rows) == 0 {
		return
	}
	heading := []string{
		"Training: Backward computes dA, dB and dx (T = x·Aᵀ, U = dy·B, dB = s·dyᵀ·T, dA = s·Uᵀ·x, dx = dy·W + s·U·A);",
		"without dx as for a model's first layer; an AdamW step updates A and B. Ratios are to Forward in the same run.",
	}
	if p.peer {
		heading = append(heading, "PyTorch backward = PyTorch's forward and backward of the unmerged layer, W frozen, less its forward;",
			"empty where that came out at zero or below (its forward and backward timed no slower than its forward alone: no figure).")
	}
	cols := []column{{"in=out", 6}, {"r", 3}, {"n", 4}, {"forward", statW}, {"backward", statW}, {"no dx", statW}, {"AdamW step", statW},
		{"backward/fwd", ratioW}, {"no dx/fwd", ratioW}, {"step/fwd", ratioW}, {"GFLOP/s", 7}}
	if p.peer {
		cols = append(cols, column{"PyTorch backward", timeW}, column{"backward/PyTorch", ratioW})
	}
	p.open("train", heading, 3, cols)
	for _, r := range rows {
		cells := []string{fmt.Sprint(r.In), fmt.Sprint(r.R), fmt.Sprint(r.N),
			r.Forward.String(), r.Backward.String(), r.NoDX.String(), r.Step.String(),
			fmt.Sprintf("%.3f×", r.BwdOver), fmt.Sprintf("%.3f×", r.NoDXOver), fmt.Sprintf("%.4f×", r.StepOver),
			fmt.Sprintf("%.1f", r.GFLOPs)}
		if p.peer {
			cells = append(cells, peerCell(r.PeerBackward), peerRatioCell(r.OverPeer))
		}
		p.t.row(cells, named{"forward", r.Forward}, named{"backward", r.Backward}, named{"no dx", r.NoDX}, named{"AdamW step", r.Step})
	}
}

// nf4 prints rows of the NF4 table. Its legend says what each row runs, in
// which dtypes, and the memory each dtype's W was measured to take (from
// the rows: the first call carries a row of every dtype).
func (p *printer) nf4(rows ...NF4Row) {
	if len(rows) == 0 {
		return
	}
	r0 := rows[0]
	heading := []string{
		fmt.Sprintf("NF4: one layer, in = out = %d, r = %d, W f32, bf16 or nf4 (bitsandbytes' 4-bit NormalFloat by lora.Quantize, block %d).", r0.In, r0.R, nf4Block(rows)),
		"x and y (dy and dx) are bf16 on the bf16 and nf4 rows, f32 on the f32 rows; A and B float32 on every row, as PEFT keeps them.",
		"forward = Layer.Forward; backward = Layer.Backward with dx; bank = Bank.Forward over the same W, 4 adapters, ids mixed.",
		"B/elem = bytes per element of W as stored (nf4: 0.5 + 4/block); GB/s = W's bytes ÷ the median time;",
		"nf4/bf16 = the nf4 time ÷ the bf16 one, timed in the same rounds. An error's sentinel in place of a time: the library refused the row.",
	}
	var mem []string
	for _, dt := range nf4DTypes {
		if i := slices.IndexFunc(rows, func(r NF4Row) bool { return r.DType == dt && r.Memory > 0 }); i >= 0 {
			r := rows[i]
			mem = append(mem, fmt.Sprintf("%s %.2f MiB = %.2f bits/element", dt, float64(r.Memory)/(1<<20), 8*float64(r.Memory)/float64(r.In*r.Out)))
		}
	}
	if len(mem) > 0 {
		how := "measured: the heap's growth for one W"
		if p.gpu {
			how = "its stored state"
		}
		heading = append(heading, fmt.Sprintf("W in memory (%s): %s.", how, strings.Join(mem, "; ")))
	}
	if p.peer {
		heading = append(heading, "PyTorch = the same row as PEFT computes it (bench/peer_torch.py), timed in the same run; nf4: W dequantized on every call as",
			"bitsandbytes' default backend does (table[nibble] · absmax, cast to bf16), after checking its float32 dequantization equals lora's Read bit for bit.")
	}
	cols := []column{{"op", 8}, {"n", 4}, {"dtype", 5}, {"B/elem", 6}, {"time", statW}, {"GB/s", 6}, {"nf4/bf16", ratioW}}
	if p.peer {
		cols = append(cols, column{"PyTorch", timeW}, column{"ours/PyTorch", ratioW})
	}
	p.open("nf4", heading, 3, cols)
	for _, r := range rows {
		cells := []string{r.Op, fmt.Sprint(r.N), r.DType, fmt.Sprintf("%.4g", r.BytesPerElem)}
		if r.Err != "" {
			cells = append(cells, r.Sentinel, "", "")
			if p.peer {
				cells = append(cells, peerCell(r.Peer), "")
			}
			p.t.row(cells)
			continue
		}
		bf := slices.IndexFunc(rows, func(b NF4Row) bool { return b.Op == r.Op && b.N == r.N && b.DType == dtBF16 })
		cells = append(cells, r.Time.String(), fmt.Sprintf("%.1f", r.GBs), ratioCell(r.OverBF16, bf >= 0 && rows[bf].Time.unstable()))
		if p.peer {
			over := ""
			if r.OverPeer > 0 {
				over = fmt.Sprintf("%.2f×", r.OverPeer)
				if r.OverPeer < 0.1 {
					over = fmt.Sprintf("%.2g×", r.OverPeer) // 0.0031×, not 0.00×
				}
			}
			cells = append(cells, peerCell(r.Peer), over)
		}
		p.t.row(cells, named{"time", r.Time})
	}
}

// nf4Block returns the block size of the nf4 rows among rows, or 0.
func nf4Block(rows []NF4Row) int {
	for _, r := range rows {
		if r.Block > 0 {
			return r.Block
		}
	}
	return 0
}

// percentCell formats a share as a percentage, empty when there is none.
func percentCell(v float64) string {
	if !(v > 0) {
		return ""
	}
	return fmt.Sprintf("%.0f%%", 100*v)
}

// peerCell formats a peer's time, empty when there is none.
func peerCell(t float64) string {
	if !(t > 0) {
		return ""
	}
	return ms(t)
}

// peerRatioCell formats a ratio to the peer's time, empty when the peer
// has no figure for the row.
func peerRatioCell(v float64) string {
	if !(v > 0) {
		return ""
	}
	return fmt.Sprintf("%.2f×", v)
}

// ratioCell formats a bf16 row's ratio to its f32 row: empty on an f32
// row (0), and "unstable" when the f32 time it divides by is.
func ratioCell(v float64, f32Unstable bool) string {
	switch {
	case !(v > 0):
		return ""
	case f32Unstable:
		return "unstable"
	}
	return fmt.Sprintf("%.3f×", v)
}

// printTable prints a whole report, as saved results are printed.
func printTable(w io.Writer, rep *Report) {
	p := &printer{
		w:   w,
		gpu: rep.Machine["backend"] != "" && rep.Machine["backend"] != "cpu",
		peer: len(rep.Forward) > 0 && rep.Forward[0].PeerUnmerged > 0 ||
			len(rep.Forward) == 0 && slices.ContainsFunc(rep.NF4, func(r NF4Row) bool { return r.Peer > 0 }),
		limits: slices.ContainsFunc(rep.Forward, func(r ForwardRow) bool { return r.LimitShare > 0 }),
		half: slices.ContainsFunc(rep.Forward, func(r ForwardRow) bool { return rowDType(r.DType) != dtF32 }) ||
			slices.ContainsFunc(rep.Merge, func(r MergeRow) bool { return rowDType(r.DType) != dtF32 }),
	}
	p.machine(rep.Machine, rep.Host)
	p.forward(rep.Forward...)
	p.merge(rep.Merge...)
	p.train(rep.Train...)
	p.nf4(rep.NF4...)
	p.end()
}
