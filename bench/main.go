// Command bench measures the lora package on this machine and prints the
// table of results: time per call of the base product, the fused Forward, the
// unfused three-step Forward and the merged Forward, the overhead of Forward
// over the base product, Merge (against a plain streaming pass over W on the
// CPU, against the nominal memory bandwidth on a GPU), the host cost of one
// call, and the trainable parameters of each adapter. Rows are float32 (dtype
// f32); at in = out = 4096, r = 16, Forward at n = 1, 16 and 64 (and 4096 on
// a GPU) and Merge also have a bf16 row (W, x and y bfloat16, A and B
// float32), timed in the same rounds as the f32 row, with the ratio bf16 ÷
// f32 beside it. The NF4 table (bench/nf4.go) sets a W quantized to NF4
// beside f32 and bf16 ones.
//
//	go run ./bench                  the full table, a row at a time (about 4 minutes on 2 cores)
//	go run ./bench -quick           a few rows, about a minute
//	go run ./bench -json            the same measurements as JSON on stdout
//	go run ./bench -json-out F      the table on stdout and the JSON in F
//	go run ./bench -peer torch      PyTorch, the way PEFT computes the layer,
//	                                timed in the same run (bench/peer_torch.py)
//	go run ./bench -plot DIR        the figures as PNG files in DIR
//	go run ./bench -from F -plot D  the table and figures of earlier JSON results
//	go run ./bench -bank            only the Bank table: many adapters in one batch
//	                                (with -peer torch: PyTorch's mixed batch, as PEFT;
//	                                with -quick: its rows at n = 16)
//	go run ./bench -nf4             only the NF4 table (bench/nf4.go): Forward, Backward
//	                                and the Bank over a W in f32, bf16 and nf4
//	                                (with -quick: Forward at n = 1)
//
// Each operation is warmed up, then timed in batches of back-to-back calls
// (a batch lasts about 2 ms) in interleaved rounds, one batch of every
// operation of a row per round, until each has run for 300 ms and at least 5
// batches. Each batch follows one untimed call of its operation, so that it
// finds its operands where its own last call left them (in the caches, or,
// for the rows that rotate copies of W, on their way to memory), as the
// peer's back-to-back calls of one operation do, rather than where the other
// operations of the round left them. The table shows the median time per call and half its spread (the
// interquartile range of the batches, relative to the median). A row where
// some spread is over 50 % is printed as unstable, without figures: a busy
// machine, to be re-run. Rows are printed as they are measured, and stderr
// says which step is under way and about how long the rest will take (one
// plain line per step when stderr is not a terminal). On the GPU the time is the
// device's, from CUDA events around each batch, and the wall time per call,
// host included, is shown beside it. Rows with n ≤ 16 are bandwidth-bound:
// they rotate through copies of W that together exceed the caches (host LLC
// and GPU L2), so that W streams from memory as it would in a model.
package main

import (
	"bufio"
	"cmp"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"time"

	"gonum.org/v1/gonum/blas/blas32"

	"github.com/golora/lora"
	"github.com/golora/lora/internal/cpu"
	"github.com/golora/lora/internal/perf"
)

// Stat is the timing of one operation, in seconds per call: the median,
// quartiles, fastest and slowest batch by device time (CUDA events on the
// GPU, equal to wall time on the CPU), and the median wall time, host side
// included. Results saved before the quartiles were recorded have Q1 = Q3 = 0.
type Stat struct {
	Median float64 `json:"median_s"`
	Q1     float64 `json:"q1_s,omitempty"`
	Q3     float64 `json:"q3_s,omitempty"`
	Min    float64 `json:"min_s"`
	Max    float64 `json:"max_s"`
	Wall   float64 `json:"wall_s"`
	Calls  int     `json:"calls"`
	Batch  int     `json:"batch"`
}

// String is the median and half the spread: "5.09ms ±12%".
func (s Stat) String() string {
	return fmt.Sprintf("%s ±%.0f%%", ms(s.Median), s.spreadPercent()/2)
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

// ForwardRow is one line of the Forward table. DType is the dtype of W, x
// and y ("f32" or "bf16"; A and B are float32 in either, as PEFT keeps
// them); results saved before rows had a dtype are f32.
type ForwardRow struct {
	perf.Shape
	DType       string  `json:"dtype"`
	Copies      int     `json:"w_copies"`
	Base        Stat    `json:"base"`
	Fused       Stat    `json:"fused"`
	Unfused     Stat    `json:"unfused"`
	Merged      Stat    `json:"merged"`
	Overhead    float64 `json:"fused_over_base"`
	UnfusedOver float64 `json:"unfused_over_base"`
	GFLOPs      float64 `json:"fused_gflops"`
	GBs         float64 `json:"fused_gbs"`
	PeakShare   float64 `json:"fused_share_of_peak_bandwidth,omitempty"`
	// The fused Forward's share of this machine's limit, measured in the
	// same run (Limits.share): the read bandwidth on W's bytes at n ≤ 4,
	// the float32 FMA rate above.
	LimitShare     float64 `json:"fused_share_of_limit,omitempty"`
	Trainable      int     `json:"trainable_params"`
	Full           int     `json:"full_params"`
	TrainableShare float64 `json:"trainable_share"`
	// A bf16 row: its fused Forward ÷ the f32 row's of the same shape,
	// timed in the same rounds.
	OverF32 float64 `json:"fused_over_f32,omitempty"`
	// The peer, when -peer is given: seconds per call and ours ÷ theirs.
	PeerUnmerged  float64 `json:"peer_unmerged_s,omitempty"`
	PeerMerged    float64 `json:"peer_merged_s,omitempty"`
	OverPeerUnm   float64 `json:"fused_over_peer_unmerged,omitempty"`
	OverPeerMerge float64 `json:"merged_over_peer_merged,omitempty"`
}

// MergeRow is one line of the Merge table, of W's dtype DType (as in
// ForwardRow). A bf16 row has no streaming pass.
type MergeRow struct {
	In, Out, R int
	DType      string  `json:"dtype"`
	Copies     int     `json:"w_copies"`
	Merge      Stat    `json:"merge"`
	Stream     Stat    `json:"stream"`
	GBs        float64 `json:"merge_gbs"`
	StreamGBs  float64 `json:"stream_gbs,omitempty"`
	Ratio      float64 `json:"merge_over_stream,omitempty"`
	PeakShare  float64 `json:"merge_share_of_peak_bandwidth,omitempty"`
	PeerMerge  float64 `json:"peer_merge_s,omitempty"`
	OverPeer   float64 `json:"merge_over_peer,omitempty"`
	// A bf16 row: its Merge ÷ the f32 row's of the same shape, timed in
	// the same rounds.
	OverF32 float64 `json:"merge_over_f32,omitempty"`
}

// HostCost is the time one Forward call takes on the host: on the GPU, the
// cost of checking and enqueuing, measured where the kernels are negligible.
type HostCost struct {
	perf.Shape
	PerCall float64 `json:"per_call_s"`
}

// Report is the whole run.
type Report struct {
	Machine map[string]string `json:"machine"`
	Host    HostCost          `json:"host_cost"`
	Forward []ForwardRow      `json:"forward"`
	Merge   []MergeRow        `json:"merge"`
	Train   []TrainRow        `json:"train"`
	NF4     []NF4Row          `json:"nf4,omitempty"`
	Limits  Limits            `json:"limits,omitzero"`
}

type op struct {
	name string
	run  func() error
}

// batchTarget is the duration a batch of calls aims at: long enough for the
// clock, short enough for many batches.
const batchTarget = 2 * time.Millisecond

// measure times ops in interleaved rounds, one batch of calls of each op per
// round, until each has run for minTime and at least minReps batches (at
// most maxReps). Each op is warmed up first, and its batch size chosen so
// that a batch lasts about batchTarget.
func measure(ops []op, minTime time.Duration, minReps, maxReps int) ([]Stat, error) {
	clock, err := perf.NewClock()
	if err != nil {
		return nil, err
	}
	defer clock.Close()
	batch := func(o op, calls int) (wall, device float64, err error) {
		if err := clock.Start(); err != nil {
			return 0, 0, err
		}
		for range calls {
			if err := o.run(); err != nil {
				return 0, 0, fmt.Errorf("%s: %w", o.name, err)
			}
		}
		wall, device, err = clock.Stop()
		if err != nil {
			return 0, 0, fmt.Errorf("%s: %w", o.name, err)
		}
		return wall / float64(calls), device / float64(calls), nil
	}
	sizes := make([]int, len(ops))
	for i, o := range ops {
		if _, _, err := batch(o, 1); err != nil { // warm-up
			return nil, err
		}
		wall, _, err := batch(o, 1)
		if err != nil {
			return nil, err
		}
		sizes[i] = max(1, min(1000, int(batchTarget.Seconds()/max(wall, 1e-9))))
	}
	dev := make([][]float64, len(ops))
	walls := make([][]float64, len(ops))
	for reps := 0; reps < maxReps; reps++ {
		for i, o := range ops {
			// One call untimed: the batch starts from its own operation's
			// state of the caches, not the previous operation's.
			if err := o.run(); err != nil {
				return nil, fmt.Errorf("%s: %w", o.name, err)
			}
			w, d, err := batch(o, sizes[i])
			if err != nil {
				return nil, err
			}
			dev[i] = append(dev[i], d)
			walls[i] = append(walls[i], w)
		}
		done := reps+1 >= minReps
		for i, s := range walls {
			var sum float64
			for _, v := range s {
				sum += v * float64(sizes[i])
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
	for i, d := range dev {
		slices.Sort(d)
		slices.Sort(walls[i])
		stats[i] = Stat{Median: median(d), Q1: quantile(d, 0.25), Q3: quantile(d, 0.75),
			Min: d[0], Max: d[len(d)-1], Wall: median(walls[i]),
			Calls: len(d) * sizes[i], Batch: sizes[i]}
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

// quantile returns the q-quantile of sorted values, interpolating linearly
// between the two nearest (the definition of numpy's default).
func quantile(sorted []float64, q float64) float64 {
	pos := q * float64(len(sorted)-1)
	i := int(pos)
	if i+1 >= len(sorted) {
		return sorted[len(sorted)-1]
	}
	return sorted[i] + (pos-float64(i))*(sorted[i+1]-sorted[i])
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
	if lora.Backend() == "cpu" {
		// The CPU kernels' level: the processor's, or a lower one LORA_CPU names.
		m["cpu kernels"] = cpu.CurrentLevel().String()
		if note := cpu.LevelNote(); note != "" {
			m["cpu kernels"] += " (" + note + ")"
		}
	}
	if llc := perf.LLCBytes(); llc > 0 {
		m["llc"] = fmt.Sprintf("%d MiB", llc>>20)
	} else {
		m["llc"] = "unknown"
	}
	if name, bw, l2 := perf.Device(); name != "" {
		m["device"] = name
		if bw > 0 {
			m["device bandwidth"] = fmt.Sprintf("%.0f GB/s nominal", bw/1e9)
		}
		if l2 > 0 {
			m["device L2"] = fmt.Sprintf("%d MiB", l2>>20)
		}
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
	// bf16 rows, measured in the same rounds as the f32 row of the same
	// shape (whose in, n and r must be measured too): Forward shapes
	// (In, N, R) and Merge shapes (In, R).
	bf16Forward, bf16Merge []perf.Shape
	train                  []perf.Shape // rows of the Training table
	minTime                time.Duration
	minReps                int
	maxReps                int
	peer                   *peerConfig // nil: no peer
	nf4                    *nf4Config  // the NF4 table; nil: none
	bankNs                 []int       // n of the Bank table's rows (-bank)
	bankIn                 int         // in = out of the Bank table; zero: 4096
	limits                 bool        // measure the machine's limits (bench/limits.go)
	// The read pass's buffer and the FMA loop's time per run; zero: the
	// defaults, limitBytes() and 200 ms.
	limitRead int
	fmaTime   time.Duration
}

// step is one step of a run: what it measures, the cost model's estimate of
// its seconds, and the work, which measures and prints its rows.
type step struct {
	what string
	est  func() float64
	do   func() error
}

// run measures everything cfg asks for, printing the table to out a row at a
// time as the rows are measured (the peer, when there is one, is timed
// first, so that each row is printed whole) and the steps to progress.
func run(cfg config, out, progressTo io.Writer) (*Report, error) {
	rep := &Report{Machine: machine()}
	m := newCostModel(cfg)
	p := &printer{gpu: lora.Backend() != "cpu", peer: cfg.peer != nil, half: len(cfg.bf16Forward)+len(cfg.bf16Merge) > 0,
		limits: cfg.limits}
	var peer *peerTimes
	var steps []step
	if cfg.peer != nil && len(cfg.ins)+len(cfg.train) > 0 {
		steps = append(steps, step{"PyTorch (the way PEFT computes the layer) on every shape", m.peer, func() error {
			pt, err := runPeer(cfg)
			if err != nil {
				return err
			}
			peer = pt
			rep.Machine["peer"] = pt.desc
			return nil
		}})
	}
	// The NF4 table's W, quantized once: handed to the peer as it is, then
	// copied into every layer the table times.
	var nb *nf4Bench
	var src *nf4Source
	var nf4Times nf4PeerTimes
	defer func() {
		if nb != nil {
			nb.free()
		}
	}()
	if c := cfg.nf4; c != nil && cfg.peer != nil {
		steps = append(steps, step{"PyTorch on the NF4 table (W dequantized as bitsandbytes does)", m.nf4Peer, func() error {
			var err error
			if src, err = newNF4Source(c); err != nil {
				return err
			}
			var desc string
			if nf4Times, desc, err = nf4Peer(cfg, src); err != nil {
				return err
			}
			if rep.Machine["peer"] == "" {
				rep.Machine["peer"] = desc
			} else {
				rep.Machine["peer, NF4"] = desc
			}
			return nil
		}})
	}
	if cfg.limits {
		steps = append(steps, step{"this machine's limits: float32 FMA rate and read bandwidth", m.limits, func() error {
			read, fma := cmp.Or(cfg.limitRead, limitBytes()), cmp.Or(cfg.fmaTime, 200*time.Millisecond)
			rep.Limits = measureLimits(read, fma)
			rep.Limits.describe(rep.Machine)
			return nil
		}})
	}
	steps = append(steps, step{"host cost of one Forward call", m.host, func() error {
		host, err := hostCost()
		if err != nil {
			return err
		}
		rep.Host = host
		p.machine(rep.Machine, host)
		return nil
	}})
	for _, in := range cfg.ins {
		for _, n := range cfg.ns {
			steps = append(steps, step{fmt.Sprintf("forward in=out=%d n=%d", in, n),
				func() float64 { return m.forward(in, n) }, func() error {
					rows, err := forwardRows(cfg, in, n)
					if err != nil {
						return err
					}
					m.learn(rows[0])
					for i := range rows {
						rows[i].LimitShare = rep.Limits.share(rows[i])
					}
					if peer != nil {
						peer.fillForward(rows)
					}
					rep.Forward = append(rep.Forward, rows...)
					p.forward(rows...)
					return nil
				}})
		}
	}
	for _, in := range cfg.ins {
		for _, r := range cfg.mergeRanks {
			steps = append(steps, step{fmt.Sprintf("merge in=out=%d r=%d", in, r),
				func() float64 { return m.merge(in, r) }, func() error {
					rows, err := mergeRows(cfg, in, r)
					if err != nil {
						return err
					}
					if peer != nil {
						for i := range rows {
							peer.fillMerge(&rows[i])
						}
					}
					rep.Merge = append(rep.Merge, rows...)
					p.merge(rows...)
					return nil
				}})
		}
	}
	for _, s := range cfg.train {
		steps = append(steps, step{fmt.Sprintf("training %v", s),
			func() float64 { return m.train(s) }, func() error {
				row, err := trainRow(cfg, s)
				if err != nil {
					return err
				}
				if peer != nil {
					peer.fillTrain(&row)
				}
				rep.Train = append(rep.Train, row)
				p.train(row)
				return nil
			}})
	}
	if c := cfg.nf4; c != nil {
		steps = append(steps, step{"NF4 table: W quantized; its copies in f32/bf16/nf4",
			func() float64 { return m.nf4Setup(c) }, func() error {
				var err error
				if src == nil {
					if src, err = newNF4Source(c); err != nil {
						return err
					}
				}
				nb, err = newNF4Bench(src)
				return err
			}})
		for _, st := range c.steps() {
			steps = append(steps, step{fmt.Sprintf("NF4 table: %s n=%d", st.Op, st.N),
				func() float64 { return m.nf4(c, st) }, func() error {
					rows, err := nb.rows(cfg, st)
					if err != nil {
						return err
					}
					if nf4Times != nil {
						nf4Times.fill(rows)
					}
					rep.NF4 = append(rep.NF4, rows...)
					p.nf4(rows...)
					return nil
				}})
		}
	}
	prog := newProgress(progressTo, len(steps))
	p.w = clearing{out, prog}
	for i, s := range steps {
		finished := 0.0
		if i > 0 {
			finished = steps[i-1].est()
		}
		left := 0.0
		for _, t := range steps[i:] {
			left += t.est()
		}
		prog.step(s.what, finished, left)
		if err := s.do(); err != nil {
			prog.clear()
			return nil, err
		}
	}
	p.end()
	prog.finish()
	return rep, nil
}

// hostCost times Forward at n = 1 on a 64×64 layer, where the work itself
// is negligible, without waiting for it: on the GPU this is the host's cost
// of checking the arguments and enqueuing the kernels. The best of five runs
// of up to 2000 calls (each run stops after 100 ms) is kept.
func hostCost() (HostCost, error) {
	s := perf.Shape{N: 1, In: 64, Out: 64, R: 16}
	p, err := perf.NewProblem(s, 1)
	if err != nil {
		return HostCost{}, err
	}
	defer p.Free()
	best := math.Inf(1)
	for range 5 {
		if err := lora.Sync(); err != nil {
			return HostCost{}, err
		}
		t0 := time.Now()
		calls := 0
		for calls < 2000 && (calls%16 != 0 || time.Since(t0) < 100*time.Millisecond) {
			if err := p.Forward(); err != nil {
				return HostCost{}, err
			}
			calls++
		}
		best = min(best, time.Since(t0).Seconds()/float64(calls))
	}
	return HostCost{Shape: s, PerCall: best}, lora.Sync()
}

// forwardRows measures, in one set of interleaved rounds, the base product,
// the merged Forward, and the fused and unfused Forward at every rank, in
// float32, and the same in bf16 for the shapes of cfg.bf16Forward at this in
// and n: their rows follow the f32 rows.
func forwardRows(cfg config, in, n int) ([]ForwardRow, error) {
	var probs []*perf.Problem
	var halves []*perf.Problem
	defer func() {
		for _, p := range probs {
			p.Free()
		}
		for _, p := range halves {
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
	var half []perf.Shape
	for _, s := range cfg.bf16Forward {
		if s.In != in || s.N != n {
			continue
		}
		s.Out = in
		half = append(half, s)
		hc := perf.CopiesOf(s, 2)
		hm, err := perf.NewProblemOf(lora.BF16, s, hc)
		if err != nil {
			return nil, err
		}
		halves = append(halves, hm)
		if err := hm.SetMerged(true); err != nil {
			return nil, err
		}
		hp, err := perf.NewProblemOf(lora.BF16, s, hc)
		if err != nil {
			return nil, err
		}
		halves = append(halves, hp)
		ops = append(ops, op{fmt.Sprintf("bf16 base r=%d", s.R), hm.Base}, op{fmt.Sprintf("bf16 merged r=%d", s.R), hm.Forward},
			op{fmt.Sprintf("bf16 fused r=%d", s.R), hp.Forward}, op{fmt.Sprintf("bf16 unfused r=%d", s.R), hp.Unfused})
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
			Shape: s, DType: dtF32, Copies: copies,
			Base: stats[0], Merged: stats[1], Fused: fused, Unfused: unfused,
			Overhead:       fused.Median / stats[0].Median,
			UnfusedOver:    unfused.Median / stats[0].Median,
			GFLOPs:         (s.BaseFLOP() + s.LoRAFLOP()) / fused.Median / 1e9,
			GBs:            s.Bytes(true) / fused.Median / 1e9,
			PeakShare:      peakShare(s.Bytes(true) / fused.Median),
			Trainable:      r * (in + in),
			Full:           in * in,
			TrainableShare: float64(r*(in+in)) / float64(in*in),
		})
	}
	for i, s := range half {
		st := stats[2+2*len(cfg.ranks)+4*i:]
		b, m, fused, unfused := st[0], st[1], st[2], st[3]
		row := ForwardRow{
			Shape: s, DType: dtBF16, Copies: len(halves[2*i].Layers),
			Base: b, Merged: m, Fused: fused, Unfused: unfused,
			Overhead:       fused.Median / b.Median,
			UnfusedOver:    unfused.Median / b.Median,
			GFLOPs:         (s.BaseFLOP() + s.LoRAFLOP()) / fused.Median / 1e9,
			GBs:            s.BytesOf(2, true) / fused.Median / 1e9,
			PeakShare:      peakShare(s.BytesOf(2, true) / fused.Median),
			Trainable:      s.R * (in + in),
			Full:           in * in,
			TrainableShare: float64(s.R*(in+in)) / float64(in*in),
		}
		if k := slices.Index(cfg.ranks, s.R); k >= 0 {
			row.OverF32 = fused.Median / rows[k].Fused.Median
		}
		rows = append(rows, row)
	}
	return rows, nil
}

// mergeRows measures Merge/Unmerge (alternating) against a single-threaded
// streaming pass w[i] *= c over a W of the same size, in the same rounds,
// and, when cfg.bf16Merge has this shape, Merge/Unmerge on a bf16 W too,
// whose row follows.
func mergeRows(cfg config, in, r int) ([]MergeRow, error) {
	s := perf.Shape{N: 1, In: in, Out: in, R: r}
	copies := perf.Copies(s)
	p, err := perf.NewProblem(s, copies)
	if err != nil {
		return nil, err
	}
	defer p.Free()
	cpu := lora.Backend() == "cpu"
	bufs := make([][]float32, copies)
	for i := range bufs {
		if !cpu {
			break
		}
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
	ops := []op{{"merge", p.MergeToggle}}
	if cpu {
		ops = append(ops, op{"stream", stream})
	}
	var hp *perf.Problem
	if slices.ContainsFunc(cfg.bf16Merge, func(h perf.Shape) bool { return h.In == in && h.R == r }) {
		if hp, err = perf.NewProblemOf(lora.BF16, s, perf.CopiesOf(s, 2)); err != nil {
			return nil, err
		}
		defer hp.Free()
		ops = append(ops, op{"bf16 merge", hp.MergeToggle})
	}
	stats, err := measure(ops, cfg.minTime, cfg.minReps, cfg.maxReps)
	if err != nil {
		return nil, err
	}
	row := MergeRow{
		In: in, Out: in, R: r, DType: dtF32, Copies: copies, Merge: stats[0],
		GBs:       s.MergeBytes() / stats[0].Median / 1e9,
		PeakShare: peakShare(s.MergeBytes() / stats[0].Median),
	}
	if cpu {
		row.Stream = stats[1]
		row.StreamGBs = 8 * float64(in*in) / stats[1].Median / 1e9
		row.Ratio = stats[0].Median / stats[1].Median
	}
	rows := []MergeRow{row}
	if hp != nil {
		h := stats[len(stats)-1]
		rows = append(rows, MergeRow{
			In: in, Out: in, R: r, DType: dtBF16, Copies: len(hp.Layers), Merge: h,
			GBs:       s.MergeBytesOf(2) / h.Median / 1e9,
			PeakShare: peakShare(s.MergeBytesOf(2) / h.Median),
			OverF32:   h.Median / stats[0].Median,
		})
	}
	return rows, nil
}

// peakShare returns bytes/s as a share of the device's nominal bandwidth, or
// 0 when there is no device or it is unknown.
func peakShare(bps float64) float64 {
	if _, bw, _ := perf.Device(); bw > 0 {
		return bps / bw
	}
	return 0
}

func main() {
	quick := flag.Bool("quick", false, "a few rows, about a minute")
	asJSON := flag.Bool("json", false, "print the results as JSON")
	peerName := flag.String("peer", "", `time a peer in the same run: "torch" (PyTorch, the way PEFT computes a LoRA layer)`)
	python := flag.String("python", "", "the Python interpreter that runs the torch peer (default: the first python3 that has torch)")
	script := flag.String("peer-script", "", "the peer script (default: peer_torch.py in ./bench or beside this program)")
	jsonOut := flag.String("json-out", "", "also write the results as JSON to this file")
	plotDir := flag.String("plot", "", "also draw the figures as PNG files into this directory")
	from := flag.String("from", "", "measure nothing: print the table (and -plot the figures) of the JSON results in this file")
	bankOnly := flag.Bool("bank", false, "measure only the Bank table (bench/bank.go)")
	nf4Only := flag.Bool("nf4", false, "measure only the NF4 table (bench/nf4.go): W in f32, bf16 and nf4")
	flag.Parse()
	cfg := newConfig(*quick, *nf4Only)
	if *from != "" {
		b, err := os.ReadFile(*from)
		if err == nil {
			var rep *Report
			if rep, err = loadReport(b); err == nil {
				if !*asJSON {
					printTable(os.Stdout, rep)
				}
				err = output(rep, *plotDir, "", *asJSON)
			}
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
		return
	}
	if *peerName != "" {
		pc, err := newPeer(*peerName, *python, *script)
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(2)
		}
		cfg.peer = pc
	}
	if *bankOnly {
		os.Exit(bankMain(cfg, os.Stdout, os.Stderr))
	}
	var table io.Writer = os.Stdout
	if *asJSON {
		table = io.Discard
	}
	rep, err := run(cfg, table, os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
	if err := output(rep, *plotDir, *jsonOut, *asJSON); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// newConfig returns what a run measures: the whole bench, or with quick a
// few rows of each table (the NF4 table's Forward at n = 1), and with
// nf4Only the NF4 table alone.
func newConfig(quick, nf4Only bool) config {
	cfg := config{
		ins: []int{1024, 4096}, ranks: []int{8, 16, 64}, ns: []int{1, 16, 64, 256},
		mergeRanks: []int{8, 16, 64},
		// bf16 beside f32 where the ratios tell: decode, a small batch and
		// larger ones (where the CPU's bf16 product runs on AMX or AVX-512
		// BF16), and Merge, at in = out = 4096, r = 16.
		bf16Forward: []perf.Shape{{N: 1, In: 4096, R: 16}, {N: 16, In: 4096, R: 16}, {N: 64, In: 4096, R: 16},
			{N: 256, In: 4096, R: 16}},
		bf16Merge: []perf.Shape{{In: 4096, R: 16}},
		train: []perf.Shape{
			{N: 16, In: 1024, Out: 1024, R: 16}, {N: 256, In: 1024, Out: 1024, R: 16},
			{N: 16, In: 4096, Out: 4096, R: 16}, {N: 256, In: 4096, Out: 4096, R: 16},
		},
		nf4:     defaultNF4(),
		bankNs:  []int{16, 64, 256},
		limits:  lora.Backend() == "cpu",
		minTime: 300 * time.Millisecond, minReps: 5, maxReps: 200,
	}
	if lora.Backend() == "cuda" {
		// A GPU is fast enough for a prefill-sized batch too, where bf16
		// runs on tensor cores.
		cfg.ns = append(cfg.ns, 4096)
		cfg.bf16Forward = append(cfg.bf16Forward, perf.Shape{N: 4096, In: 4096, R: 16})
	}
	if quick {
		cfg = config{
			ins: []int{1024, 4096}, ranks: []int{16}, ns: []int{1, 64},
			mergeRanks:  []int{16},
			bf16Forward: []perf.Shape{{N: 1, In: 4096, R: 16}, {N: 64, In: 4096, R: 16}},
			bf16Merge:   []perf.Shape{{In: 4096, R: 16}},
			train:       []perf.Shape{{N: 64, In: 1024, Out: 1024, R: 16}},
			nf4:         quickNF4(),
			bankNs:      []int{16},
			limits:      lora.Backend() == "cpu",
			minTime:     100 * time.Millisecond, minReps: 3, maxReps: 50,
		}
	}
	if nf4Only {
		cfg = config{nf4: cfg.nf4, limits: cfg.limits, minTime: cfg.minTime, minReps: cfg.minReps, maxReps: cfg.maxReps}
	}
	return cfg
}

// loadReport reads saved results: rows saved before rows had a dtype are
// f32.
func loadReport(b []byte) (*Report, error) {
	var rep Report
	if err := json.Unmarshal(b, &rep); err != nil {
		return nil, err
	}
	for i := range rep.Forward {
		rep.Forward[i].DType = rowDType(rep.Forward[i].DType)
	}
	for i := range rep.Merge {
		rep.Merge[i].DType = rowDType(rep.Merge[i].DType)
	}
	return &rep, nil
}

// output writes the report: JSON to jsonOut if given, the figures into
// plotDir if given, and the JSON on stdout with asJSON (the table is printed
// as the rows come).
func output(rep *Report, plotDir, jsonOut string, asJSON bool) error {
	js, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	if jsonOut != "" {
		if err := os.WriteFile(jsonOut, append(js, '\n'), 0o644); err != nil {
			return err
		}
	}
	if plotDir != "" {
		files, err := writePlots(plotDir, rep)
		if err != nil {
			return err
		}
		for _, f := range files {
			fmt.Fprintln(os.Stderr, "bench: wrote", f)
		}
	}
	if asJSON {
		_, err := os.Stdout.Write(append(js, '\n'))
		return err
	}
	return nil
}
