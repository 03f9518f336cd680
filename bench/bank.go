package main

// The "Bank" table: many adapters over one base weight, each row of a batch
// with its own (lora.Bank), against the base product alone and against a
// loop of Layer.Forward over the adapters present, each on its own rows.
//
//	go run ./bench -bank            only this table
//	go run ./bench -bank -peer torch  with PyTorch doing what PEFT does for a
//	                                mixed batch (bench/peer_torch.py, "bank")
//
// in = out = 4096, r = 16, n ∈ {16, 64, 256}; per batch 1, 8, 64 (when
// below n) or n distinct adapters (n: every row its own), the rows' ids in
// random order or in runs of consecutive rows. W is 64 MiB, beyond the
// host's last-level cache and a GPU's L2, so every call streams it from
// memory. The loop's rows are gathered per adapter before the timing: it is
// timed without the gather and scatter a server would add.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"os/exec"
	"runtime"
	"time"

	"github.com/golora/lora"
)

// BankRow is one line of the Bank table.
type BankRow struct {
	N, In, Out, R int
	Distinct      int     `json:"distinct_adapters"`
	Order         string  `json:"order"`
	Base          Stat    `json:"base"`
	Bank          Stat    `json:"bank"`
	Loop          Stat    `json:"loop_of_layers"`
	OverBase      float64 `json:"bank_over_base"`
	OverLoop      float64 `json:"bank_over_loop"`
	Peer          float64 `json:"peer_mixed_s,omitempty"`
	OverPeer      float64 `json:"bank_over_peer,omitempty"`
}

// bankCase is one row to measure: the batch's ids.
type bankCase struct {
	N        int     `json:"n"`
	In       int     `json:"in"`
	Out      int     `json:"out"`
	R        int     `json:"r"`
	Distinct int     `json:"distinct"`
	Order    string  `json:"order"`
	IDs      []int32 `json:"ids"`
	Seconds  float64 `json:"mixed_s,omitempty"` // the peer's answer
}

// bankPeer runs the peer script on every case: PyTorch's mixed-batch
// forward as PEFT computes it (the base layer on all rows, then for each
// adapter present its rows selected, its update added in place), timed as
// the rest of the bench is. It returns the seconds per call by case index
// and a description of the peer.
func bankPeer(cfg config, cases []bankCase) ([]float64, string, error) {
	req := map[string]any{"device": "cpu", "threads": runtime.GOMAXPROCS(0),
		"min_time": cfg.minTime.Seconds(), "min_reps": cfg.minReps, "bank": cases}
	if lora.Backend() == "cuda" {
		req["device"] = "cuda"
	}
	body, err := json.Marshal(req)
	if err != nil {
		return nil, "", err
	}
	cmd := exec.Command(cfg.peer.python, cfg.peer.script)
	cmd.Stdin = bytes.NewReader(body)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, "", fmt.Errorf("peer torch: %v\n%s", err, stderr.String())
	}
	var ans struct {
		Torch, Device, BLAS string
		Threads             int
		Bank                []bankCase
	}
	if err := json.Unmarshal(stdout.Bytes(), &ans); err != nil {
		return nil, "", fmt.Errorf("peer torch: reading its answer: %v", err)
	}
	if len(ans.Bank) != len(cases) {
		return nil, "", fmt.Errorf("peer torch: %d answers for %d Bank rows (does bench/peer_torch.py know \"bank\"?)", len(ans.Bank), len(cases))
	}
	secs := make([]float64, len(cases))
	for i, a := range ans.Bank {
		secs[i] = a.Seconds
	}
	return secs, fmt.Sprintf("torch %s on %s, %d threads, BLAS %s", ans.Torch, ans.Device, ans.Threads, ans.BLAS), nil
}

// bankIDs returns n ids over d adapters: every adapter at least once, in
// runs of consecutive rows ("runs") or shuffled ("random").
func bankIDs(rng *rand.Rand, n, d int, order string) []int32 {
	ids := make([]int32, n)
	for i := range ids {
		ids[i] = int32(i * d / n) // runs: adapter k on rows [k·n/d, (k+1)·n/d)
	}
	if order == "random" {
		rng.Shuffle(n, func(i, j int) { ids[i], ids[j] = ids[j], ids[i] })
	}
	return ids
}

// bankCases returns the rows of the Bank table at each n of ns: 1, 8, 64
// (when below n) and n distinct adapters, in random order and in runs.
func bankCases(rng *rand.Rand, in, r int, ns []int) []bankCase {
	var cases []bankCase
	for _, n := range ns {
		for _, d := range []int{1, 8, 64, n} {
			if d > n || (d == 64 && n == 64 && cases[len(cases)-1].Distinct == 64) {
				continue // beyond n, or n = 64 again
			}
			for _, order := range []string{"random", "runs"} {
				if d == 1 && order == "random" {
					continue // one adapter: the order does not matter
				}
				cases = append(cases, bankCase{N: n, In: in, Out: in, R: r, Distinct: d, Order: order,
					IDs: bankIDs(rng, n, d, order)})
			}
		}
	}
	return cases
}

// bankTable measures every row of the Bank table (n from cfg.bankNs, 16,
// 64 and 256 when it is empty; in = out = cfg.bankIn, 4096 when it is
// zero), printing each to out as it is measured and the steps to
// progressTo, as the other tables do.
func bankTable(cfg config, out, progressTo io.Writer) ([]BankRow, error) {
	const r = 16
	in := cfg.bankIn
	if in == 0 {
		in = 4096
	}
	ns := cfg.bankNs
	if len(ns) == 0 {
		ns = []int{16, 64, 256}
	}
	rng := rand.New(rand.NewPCG(1, 2))
	cases := bankCases(rng, in, r, ns)
	maxD := ns[len(ns)-1]
	// The steps and the cost model's estimate of each, for the progress
	// line: the peer, the set-up (W, and maxD adapters each in the Bank
	// and in a Layer), then a step per row, each timing three operations.
	m := newCostModel(cfg)
	w4 := 4 * float64(in) * float64(in)
	caseEst := func(c bankCase) float64 {
		return 3 * m.op(m.call(2*float64(c.N)*float64(in)*float64(in), w4))
	}
	var est []float64
	if cfg.peer != nil {
		t := 3.0
		for _, c := range cases {
			t += caseEst(c)
		}
		est = append(est, t)
	}
	est = append(est, (w4+4*float64(maxD)*w4/float64(in)*float64(r))/m.fill)
	for _, c := range cases {
		est = append(est, caseEst(c))
	}
	prog := newProgress(progressTo, len(est))
	out = clearing{out, prog}
	nextStep := 0
	step := func(what string) {
		left := 0.0
		for _, e := range est[nextStep:] {
			left += e
		}
		finished := 0.0
		if nextStep > 0 {
			finished = est[nextStep-1]
		}
		prog.step(what, finished, left)
		nextStep++
	}
	defer prog.clear()

	var peer []float64
	if cfg.peer != nil {
		step("PyTorch's mixed batch (the way PEFT computes it) on every row")
		var desc string
		var err error
		if peer, desc, err = bankPeer(cfg, cases); err != nil {
			return nil, err
		}
		fmt.Fprintln(out, "peer:", desc)
	}
	step(fmt.Sprintf("Bank table: W and %d adapters", maxD))
	rnd := func(k int, scale float32) []float32 {
		s := make([]float32, k)
		for i := range s {
			s[i] = (rng.Float32()*2 - 1) * scale
		}
		return s
	}
	var free []func()
	defer func() {
		for _, f := range free {
			f()
		}
	}()
	mat := func(rows, cols int, data []float32) (*lora.Matrix, error) {
		var m *lora.Matrix
		var err error
		if data == nil {
			m, err = lora.NewMatrix(rows, cols)
		} else {
			m, err = lora.NewMatrixFrom(rows, cols, data)
		}
		if err == nil {
			free = append(free, m.Free)
		}
		return m, err
	}
	w, err := mat(in, in, rnd(in*in, 1/64.0))
	if err != nil {
		return nil, err
	}
	bank, err := lora.NewBank(w, lora.BankConfig{MaxRank: r, Capacity: maxD})
	if err != nil {
		return nil, err
	}
	free = append(free, bank.Free)
	layers := make([]*lora.Layer, maxD)
	for k := range maxD {
		a, err := mat(r, in, rnd(r*in, 1/64.0))
		if err != nil {
			return nil, err
		}
		b, err := mat(in, r, rnd(in*r, 1/4.0))
		if err != nil {
			return nil, err
		}
		if _, err := bank.Add(a, b, 2); err != nil {
			return nil, err
		}
		// The Layer adopts its own copies of A and B.
		la, err := lora.NewMatrix(r, in)
		if err != nil {
			return nil, err
		}
		lb, err := lora.NewMatrix(in, r)
		if err != nil {
			la.Free()
			return nil, err
		}
		for _, c := range []struct{ dst, src *lora.Matrix }{{la, a}, {lb, b}} {
			h, err := c.src.ReadAll()
			if err == nil {
				err = c.dst.Write(h)
			}
			if err != nil {
				la.Free()
				lb.Free()
				return nil, err
			}
		}
		if layers[k], err = lora.NewLayerFrom(w, la, lb, 2); err != nil {
			la.Free()
			lb.Free()
			return nil, err
		}
		free = append(free, layers[k].Free)
	}

	fmt.Fprintf(out, "Bank: in = out = %d, r = %d, backend %s\n", in, r, lora.Backend())
	const format = "%4v  %8v  %6v  %13v  %13v  %14v  %9v  %9v  %14v  %9v\n"
	fmt.Fprintf(out, format, "n", "adapters", "ids", "base", "Bank.Forward", "loop of Layers", "Bank/base", "Bank/loop",
		"PyTorch mixed", "Bank/peer")
	var rows []BankRow
	var x, y *lora.Matrix
	for ci, c := range cases {
		n, d, ids := c.N, c.Distinct, c.IDs
		step(fmt.Sprintf("Bank n=%d: %d adapters (ids %s)", n, d, c.Order))
		if ci == 0 || cases[ci-1].N != n {
			if x, err = mat(n, in, rnd(n*in, 1)); err != nil {
				return nil, err
			}
			if y, err = mat(n, in, nil); err != nil {
				return nil, err
			}
		}
		// The loop's inputs: each adapter's rows, gathered.
		xh, err := x.ReadAll()
		if err != nil {
			return nil, err
		}
		type part struct{ x, y *lora.Matrix }
		parts := make([]part, d)
		for k := range d {
			var rowsK []float32
			for i, id := range ids {
				if int(id) == k {
					rowsK = append(rowsK, xh[i*in:(i+1)*in]...)
				}
			}
			m := len(rowsK) / in
			if parts[k].x, err = mat(m, in, rowsK); err != nil {
				return nil, err
			}
			if parts[k].y, err = mat(m, in, nil); err != nil {
				return nil, err
			}
		}
		ops := []op{
			{"base", func() error { return lora.Linear(y, x, w) }},
			{"bank", func() error { return bank.Forward(y, x, ids) }},
			{"loop", func() error {
				for k, p := range parts {
					if err := layers[k].Forward(p.y, p.x); err != nil {
						return err
					}
				}
				return nil
			}},
		}
		st, err := measure(ops, cfg.minTime, cfg.minReps, cfg.maxReps)
		if err != nil {
			return nil, err
		}
		row := BankRow{N: n, In: in, Out: in, R: r, Distinct: d, Order: c.Order,
			Base: st[0], Bank: st[1], Loop: st[2],
			OverBase: st[1].Median / st[0].Median, OverLoop: st[1].Median / st[2].Median}
		peerCol, overPeer := "", ""
		if peer != nil && peer[ci] > 0 {
			row.Peer, row.OverPeer = peer[ci], st[1].Median/peer[ci]
			peerCol, overPeer = ms(row.Peer), fmt.Sprintf("%.3f", row.OverPeer)
		}
		rows = append(rows, row)
		fmt.Fprintf(out, format, n, d, c.Order, row.Base, row.Bank, row.Loop,
			fmt.Sprintf("%.3f", row.OverBase), fmt.Sprintf("%.3f", row.OverLoop), peerCol, overPeer)
		for _, p := range parts {
			p.x.Free()
			p.y.Free()
		}
	}
	return rows, nil
}

// bankMain runs only the Bank table, the table on out and the progress on
// progressTo, and returns the exit status.
func bankMain(cfg config, out, progressTo io.Writer) int {
	start := time.Now()
	if _, err := bankTable(cfg, out, progressTo); err != nil {
		fmt.Fprintln(progressTo, "bench:", err)
		return 1
	}
	fmt.Fprintf(progressTo, "measured in %s\n", duration(time.Since(start).Seconds()))
	return 0
}
