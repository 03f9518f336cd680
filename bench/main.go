// Command bench measures the lora package on this machine and prints the
// table of results: time per call of the base product, the fused Forward, the
// unfused three-step Forward and the merged Forward, the overhead of Forward
// over the base product, Merge against a plain streaming pass over W, and
// the trainable parameters of each adapter.
//
//	go run ./bench            the full table (under 3 minutes on 2 cores)
//	go run ./bench -quick     a few rows, under 30 seconds
//	go run ./bench -json      the same measurements as JSON on stdout
//
// Each operation is warmed up, then timed call by call in interleaved rounds
// (one call of every operation of a row per round) until each has run for
// -mintime and at least -reps times; the table shows the median and the
// spread (fastest to slowest call, relative to the median). Rows with n ≤ 16
// are bandwidth-bound: they rotate through copies of W that together exceed
// the last-level cache, so that W streams from memory as it would in a model.
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"gonum.org/v1/gonum/blas/blas32"

	"github.com/golora/lora"
	"github.com/golora/lora/internal/perf"
)

// Stat is the timing of one operation, in seconds per call.
type Stat struct {
	Median float64 `json:"median_s"`
	Min    float64 `json:"min_s"`
	Max    float64 `json:"max_s"`
	Calls  int     `json:"calls"`
}

func (s Stat) String() string {
	return fmt.Sprintf("%s ±%.0f%%", ms(s.Median), 50*(s.Max-s.Min)/s.Median)
}

func ms(sec float64) string {
	switch {
	case sec < 1e-3:
		return fmt.Sprintf("%.1fµs", sec*1e6)
	case sec < 1:
		return fmt.Sprintf("%.2fms", sec*1e3)
	}
	return fmt.Sprintf("%.2fs", sec)
}

// ForwardRow is one line of the Forward table.
type ForwardRow struct {
	perf.Shape
	Copies         int     `json:"w_copies"`
	Base           Stat    `json:"base"`
	Fused          Stat    `json:"fused"`
	Unfused        Stat    `json:"unfused"`
	Merged         Stat    `json:"merged"`
	Overhead       float64 `json:"fused_over_base"`
	UnfusedOver    float64 `json:"unfused_over_base"`
	GFLOPs         float64 `json:"fused_gflops"`
	GBs            float64 `json:"fused_gbs"`
	Trainable      int     `json:"trainable_params"`
	Full           int     `json:"full_params"`
	TrainableShare float64 `json:"trainable_share"`
}

// MergeRow is one line of the Merge table.
type MergeRow struct {
	In, Out, R int
	Copies     int     `json:"w_copies"`
	Merge      Stat    `json:"merge"`
	Stream     Stat    `json:"stream"`
	GBs        float64 `json:"merge_gbs"`
	StreamGBs  float64 `json:"stream_gbs"`
	Ratio      float64 `json:"merge_over_stream"`
}

// Report is the whole run.
type Report struct {
	Machine map[string]string `json:"machine"`
	Forward []ForwardRow      `json:"forward"`
	Merge   []MergeRow        `json:"merge"`
}

type op struct {
	name string
	run  func() error
}

// measure times ops in interleaved rounds until each has run for minTime and
// at least minReps times (at most maxReps), after one warm-up call each.
func measure(ops []op, minTime time.Duration, minReps, maxReps int) ([]Stat, error) {
	timed := func(o op) (float64, error) {
		t0 := time.Now()
		if err := o.run(); err != nil {
			return 0, fmt.Errorf("%s: %w", o.name, err)
		}
		if err := lora.Sync(); err != nil {
			return 0, fmt.Errorf("%s: %w", o.name, err)
		}
		return time.Since(t0).Seconds(), nil
	}
	for _, o := range ops {
		if _, err := timed(o); err != nil {
			return nil, err
		}
	}
	samples := make([][]float64, len(ops))
	for reps := 0; reps < maxReps; reps++ {
		for i, o := range ops {
			d, err := timed(o)
			if err != nil {
				return nil, err
			}
			samples[i] = append(samples[i], d)
		}
		done := reps+1 >= minReps
		for _, s := range samples {
			var sum float64
			for _, v := range s {
				sum += v
			}
			if sum < minTime.Seconds() {
				done = false
			}
		}
		if done {
			break
		}
	}
	stats := make([]Stat, len(ops))
	for i, s := range samples {
		slices.Sort(s)
		stats[i] = Stat{Median: median(s), Min: s[0], Max: s[len(s)-1], Calls: len(s)}
	}
	return stats, nil
}

func median(sorted []float64) float64 {
	n := len(sorted)
	if n%2 == 1 {
		return sorted[n/2]
	}
	return (sorted[n/2-1] + sorted[n/2]) / 2
}

func machine() map[string]string {
	m := map[string]string{
		"backend":    lora.Backend(),
		"go":         runtime.Version(),
		"os/arch":    runtime.GOOS + "/" + runtime.GOARCH,
		"cores":      fmt.Sprint(runtime.NumCPU()),
		"gomaxprocs": fmt.Sprint(runtime.GOMAXPROCS(0)),
		"cpu":        cpuModel(),
		"blas":       reflect.TypeOf(blas32.Implementation()).String(),
		"date":       time.Now().UTC().Format("2006-01-02"),
	}
	if llc := perf.LLCBytes(); llc > 0 {
		m["llc"] = fmt.Sprintf("%d MiB", llc>>20)
	} else {
		m["llc"] = "unknown"
	}
	m["rotation"] = fmt.Sprintf("rows with n ≤ 16 rotate W copies over %d MiB", perf.RotateBytes()>>20)
	return m
}

func cpuModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return "unknown"
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}

type config struct {
	ins, ranks, ns []int
	mergeRanks     []int
	minTime        time.Duration
	minReps        int
	maxReps        int
}

func run(cfg config, progress io.Writer) (*Report, error) {
	rep := &Report{Machine: machine()}
	total := len(cfg.ins)*len(cfg.ns) + len(cfg.ins)*len(cfg.mergeRanks)
	step := 0
	say := func(format string, args ...any) {
		step++
		fmt.Fprintf(progress, "\r\033[K[%d/%d] %s", step, total, fmt.Sprintf(format, args...))
	}
	for _, in := range cfg.ins {
		for _, n := range cfg.ns {
			say("forward in=out=%d n=%d", in, n)
			rows, err := forwardRows(cfg, in, n)
			if err != nil {
				return nil, err
			}
			rep.Forward = append(rep.Forward, rows...)
		}
	}
	for _, in := range cfg.ins {
		for _, r := range cfg.mergeRanks {
			say("merge in=out=%d r=%d", in, r)
			row, err := mergeRow(cfg, in, r)
			if err != nil {
				return nil, err
			}
			rep.Merge = append(rep.Merge, row)
		}
	}
	fmt.Fprintf(progress, "\r\033[K")
	return rep, nil
}

// forwardRows measures, in one set of interleaved rounds, the base product,
// the merged Forward, and the fused and unfused Forward at every rank.
func forwardRows(cfg config, in, n int) ([]ForwardRow, error) {
	var probs []*perf.Problem
	defer func() {
		for _, p := range probs {
			p.Free()
		}
	}()
	base := perf.Shape{N: n, In: in, Out: in, R: cfg.ranks[0]}
	copies := perf.Copies(base)
	merged, err := perf.NewProblem(base, copies)
	if err != nil {
		return nil, err
	}
	probs = append(probs, merged)
	if err := merged.SetMerged(true); err != nil {
		return nil, err
	}
	ops := []op{{"base", merged.Base}, {"merged", merged.Forward}}
	for _, r := range cfg.ranks {
		p, err := perf.NewProblem(perf.Shape{N: n, In: in, Out: in, R: r}, copies)
		if err != nil {
			return nil, err
		}
		probs = append(probs, p)
		ops = append(ops, op{fmt.Sprintf("fused r=%d", r), p.Forward}, op{fmt.Sprintf("unfused r=%d", r), p.Unfused})
	}
	stats, err := measure(ops, cfg.minTime, cfg.minReps, cfg.maxReps)
	if err != nil {
		return nil, err
	}
	var rows []ForwardRow
	for i, r := range cfg.ranks {
		s := perf.Shape{N: n, In: in, Out: in, R: r}
		fused, unfused := stats[2+2*i], stats[3+2*i]
		rows = append(rows, ForwardRow{
			Shape: s, Copies: copies,
			Base: stats[0], Merged: stats[1], Fused: fused, Unfused: unfused,
			Overhead:       fused.Median / stats[0].Median,
			UnfusedOver:    unfused.Median / stats[0].Median,
			GFLOPs:         (s.BaseFLOP() + s.LoRAFLOP()) / fused.Median / 1e9,
			GBs:            s.Bytes(true) / fused.Median / 1e9,
			Trainable:      r * (in + in),
			Full:           in * in,
			TrainableShare: float64(r*(in+in)) / float64(in*in),
		})
	}
	return rows, nil
}

// mergeRow measures Merge/Unmerge (alternating) against a single-threaded
// streaming pass w[i] *= c over a W of the same size, in the same rounds.
func mergeRow(cfg config, in, r int) (MergeRow, error) {
	s := perf.Shape{N: 1, In: in, Out: in, R: r}
	copies := perf.Copies(s)
	p, err := perf.NewProblem(s, copies)
	if err != nil {
		return MergeRow{}, err
	}
	defer p.Free()
	bufs := make([][]float32, copies)
	for i := range bufs {
		bufs[i] = make([]float32, in*in)
		for j := range bufs[i] {
			bufs[i][j] = 1
		}
	}
	next := 0
	stream := func() error {
		perf.Stream(bufs[next], 1.0000001)
		next = (next + 1) % len(bufs)
		return nil
	}
	stats, err := measure([]op{{"merge", p.MergeToggle}, {"stream", stream}}, cfg.minTime, cfg.minReps, cfg.maxReps)
	if err != nil {
		return MergeRow{}, err
	}
	return MergeRow{
		In: in, Out: in, R: r, Copies: copies,
		Merge: stats[0], Stream: stats[1],
		GBs:       s.MergeBytes() / stats[0].Median / 1e9,
		StreamGBs: 8 * float64(in*in) / stats[1].Median / 1e9,
		Ratio:     stats[0].Median / stats[1].Median,
	}, nil
}

func printTable(w io.Writer, rep *Report) {
	keys := make([]string, 0, len(rep.Machine))
	for k := range rep.Machine {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	fmt.Fprintln(w, "lora benchmark")
	for _, k := range keys {
		fmt.Fprintf(w, "  %-10s %s\n", k, rep.Machine[k])
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Forward: y = x·Wᵀ + s·(x·Aᵀ)·Bᵀ, W out×in, x n×in. Median time per call ± half the fastest-to-slowest spread.")
	fmt.Fprintln(w, "overhead = fused ÷ base; unfused = x·Wᵀ, x·Aᵀ, ·Bᵀ and an add as separate steps; merged = Forward after Merge.")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "in=out\tr\tn\tbase\tfused\tunfused\tmerged\toverhead\tunfused/base\tGFLOP/s\tGB/s\ttrainable\t")
	for _, r := range rep.Forward {
		fmt.Fprintf(tw, "%d\t%d\t%d\t%s\t%s\t%s\t%s\t%.3f×\t%.3f×\t%.1f\t%.1f\t%d (%.2f%%)\t\n",
			r.In, r.R, r.N, r.Base, r.Fused, r.Unfused, r.Merged, r.Overhead, r.UnfusedOver,
			r.GFLOPs, r.GBs, r.Trainable, 100*r.TrainableShare)
	}
	tw.Flush()
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Merge: W ← W ± s·B·A in place (Merge and Unmerge alternate). stream = one single-threaded pass w[i] *= c over a W of the same size.")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "in=out\tr\tmerge\tGB/s\tstream\tGB/s\tmerge/stream\t")
	for _, r := range rep.Merge {
		fmt.Fprintf(tw, "%d\t%d\t%s\t%.1f\t%s\t%.1f\t%.2f×\t\n", r.In, r.R, r.Merge, r.GBs, r.Stream, r.StreamGBs, r.Ratio)
	}
	tw.Flush()
}

func main() {
	quick := flag.Bool("quick", false, "a few rows, under 30 seconds")
	asJSON := flag.Bool("json", false, "print the results as JSON")
	flag.Parse()
	cfg := config{
		ins: []int{1024, 4096}, ranks: []int{8, 16, 64}, ns: []int{1, 16, 64, 256},
		mergeRanks: []int{8, 16, 64},
		minTime:    300 * time.Millisecond, minReps: 5, maxReps: 200,
	}
	if *quick {
		cfg = config{
			ins: []int{1024, 4096}, ranks: []int{16}, ns: []int{1, 64},
			mergeRanks: []int{16},
			minTime:    100 * time.Millisecond, minReps: 3, maxReps: 50,
		}
	}
	rep, err := run(cfg, os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "\nbench:", err)
		os.Exit(1)
	}
	if *asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
		return
	}
	printTable(os.Stdout, rep)
}
