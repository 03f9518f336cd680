package main

// The "Bank" table: many adapters over one base weight, each row of a batch
// with its own (lora.Bank), against the base product alone and against a
// loop of Layer.Forward over the adapters present, each on its own rows.
//
//	go run ./bench -bank            only this table
//
// in = out = 4096, r = 16, n ∈ {16, 64, 256}; per batch 1, 8, 64 (when
// below n) or n distinct adapters (n: every row its own), the rows' ids in
// random order or in runs of consecutive rows. W is 64 MiB, beyond the
// host's last-level cache and a GPU's L2, so every call streams it from
// memory. The loop's rows are gathered per adapter before the timing: it is
// timed without the gather and scatter a server would add.

import (
	"fmt"
	"io"
	"math/rand/v2"
	"os"

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

// bankTable measures every row of the Bank table and prints it to out.
func bankTable(cfg config, out io.Writer) ([]BankRow, error) {
	const in, r = 4096, 16
	ns := []int{16, 64, 256}
	rng := rand.New(rand.NewPCG(1, 2))
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
	maxD := ns[len(ns)-1]
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
	const format = "%4v  %8v  %6v  %13v  %13v  %14v  %9v  %9v\n"
	fmt.Fprintf(out, format, "n", "adapters", "ids", "base", "Bank.Forward", "loop of Layers", "Bank/base", "Bank/loop")
	var rows []BankRow
	for _, n := range ns {
		x, err := mat(n, in, rnd(n*in, 1))
		if err != nil {
			return nil, err
		}
		y, err := mat(n, in, nil)
		if err != nil {
			return nil, err
		}
		for _, d := range []int{1, 8, 64, n} {
			if d > n || (d == 64 && n == 64 && len(rows) > 0 && rows[len(rows)-1].Distinct == 64) {
				continue // beyond n, or n = 64 again
			}
			for _, order := range []string{"random", "runs"} {
				if d == 1 && order == "random" {
					continue // one adapter: the order does not matter
				}
				ids := bankIDs(rng, n, d, order)
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
				row := BankRow{N: n, In: in, Out: in, R: r, Distinct: d, Order: order,
					Base: st[0], Bank: st[1], Loop: st[2],
					OverBase: st[1].Median / st[0].Median, OverLoop: st[1].Median / st[2].Median}
				rows = append(rows, row)
				fmt.Fprintf(out, format, n, d, order, row.Base, row.Bank, row.Loop,
					fmt.Sprintf("%.3f", row.OverBase), fmt.Sprintf("%.3f", row.OverLoop))
				for _, p := range parts {
					p.x.Free()
					p.y.Free()
				}
			}
		}
	}
	return rows, nil
}

// bankMain runs only the Bank table and returns the exit status.
func bankMain(cfg config) int {
	if _, err := bankTable(cfg, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 1
	}
	return 0
}
