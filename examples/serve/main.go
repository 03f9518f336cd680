// Command serve shows a Bank of adapters: one frozen layer W, three adapters
// trained on three different teacher tasks (W + ΔW*_k, each ΔW*_k of low
// rank), all held in one lora.Bank, and a mixed batch of requests in which
// every row names its own adapter, or none (-1: the base layer). One
// Bank.Forward serves the whole batch; each row is checked against the
// adapter's own Layer, and the batch time is compared with a loop over the
// Layers, each on its own rows. It exits with status 1 when a row differs
// from its own Layer by more than 1e-4 of the row's largest output.
//
//	go run ./examples/serve                 in = out = 512, 3 adapters, a batch of 16
//	go run ./examples/serve -n 64 -in 1024 -out 1024
//	go run ./examples/serve -in 96 -out 128 -n 32 -steps 20   small: well under a second
//	go run -tags cuda ./examples/serve      the same on the GPU
package main

import (
	"flag"
	"fmt"
	"log"
	"math"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/golora/lora"
)

func main() {
	in := flag.Int("in", 512, "input features of the layer")
	out := flag.Int("out", 512, "output features of the layer")
	rank := flag.Int("rank", 4, "rank of the adapters and of the teachers' changes")
	n := flag.Int("n", 16, "rows in the mixed batch of requests")
	steps := flag.Int("steps", 150, "AdamW steps per adapter")
	seed := flag.Uint64("seed", 1, "seed of the data and of the adapters")
	flag.Parse()
	log.SetFlags(0)
	if *in < 1 || *out < 1 || *rank < 1 || *rank > min(*in, *out) || *n < 1 || *steps < 1 {
		log.Fatal("serve: want positive sizes and -rank ≤ min(-in, -out)")
	}
	if err := run(*in, *out, *rank, *n, *steps, *seed); err != nil {
		log.Fatal(err)
	}
}

// must returns m, or ends the program on err.
func must(m *lora.Matrix, err error) *lora.Matrix {
	if err != nil {
		log.Fatal(err)
	}
	return m
}

func randn(rng *rand.Rand, k int, scale float64) []float32 {
	s := make([]float32, k)
	for i := range s {
		s[i] = float32(rng.NormFloat64() * scale)
	}
	return s
}

// train fits a new adapter on w to the teacher W + ΔW* (ΔW* = U·V, rank r)
// with AdamW on random inputs, and returns its Layer.
func train(rng *rand.Rand, w *lora.Matrix, in, out, r, steps int, seed uint64) (*lora.Layer, float32, error) {
	u := randn(rng, out*r, 1/math.Sqrt(float64(r)))
	v := randn(rng, r*in, 1/math.Sqrt(float64(in)))
	wh, err := w.ReadAll()
	if err != nil {
		return nil, 0, err
	}
	teacher := slices.Clone(wh) // W* = W + U·V
	for i := range out {
		for j := range in {
			var d float32
			for k := range r {
				d += u[i*r+k] * v[k*in+j]
			}
			teacher[i*in+j] += d
		}
	}
	wt := must(lora.NewMatrixFrom(out, in, teacher))
	defer wt.Free()
	layer, err := lora.NewLayer(w, lora.Config{Rank: r, Seed: seed})
	if err != nil {
		return nil, 0, err
	}
	const batch = 64
	x := must(lora.NewMatrix(batch, in))
	t := must(lora.NewMatrix(batch, out))
	y := must(lora.NewMatrix(batch, out))
	dy := must(lora.NewMatrix(batch, out))
	dA := must(lora.NewMatrix(r, in))
	dB := must(lora.NewMatrix(out, r))
	defer func() {
		for _, m := range []*lora.Matrix{x, t, y, dy, dA, dB} {
			m.Free()
		}
	}()
	opt := lora.NewAdamW(0.02)
	defer opt.Free()
	var loss float32
	for range steps {
		if err := x.Write(randn(rng, batch*in, 1)); err != nil {
			return nil, 0, err
		}
		if err := lora.Linear(t, x, wt); err != nil {
			return nil, 0, err
		}
		if err := layer.Forward(y, x); err != nil {
			return nil, 0, err
		}
		if loss, err = lora.MSE(dy, y, t); err != nil {
			return nil, 0, err
		}
		if err := layer.Backward(nil, dA, dB, dy, x); err != nil {
			return nil, 0, err
		}
		if err := opt.Step(layer, dA, dB); err != nil {
			return nil, 0, err
		}
	}
	return layer, loss, nil
}

func run(in, out, r, n, steps int, seed uint64) error {
	rng := rand.New(rand.NewPCG(seed, 7))
	w := must(lora.NewMatrixFrom(out, in, randn(rng, out*in, 1/math.Sqrt(float64(in)))))
	defer w.Free()

	fmt.Printf("backend %s, W %d×%d, adapters of rank %d\n", lora.Backend(), out, in, r)
	const tasks = 3
	layers := make([]*lora.Layer, tasks)
	for k := range layers {
		l, loss, err := train(rng, w, in, out, r, steps, seed+uint64(k))
		if err != nil {
			return err
		}
		defer l.Free()
		layers[k] = l
		fmt.Printf("adapter %d: trained on teacher task %d, %d AdamW steps, last loss %.3g\n", k, k, steps, loss)
	}

	bank, err := lora.NewBank(w, lora.BankConfig{MaxRank: r, Capacity: tasks})
	if err != nil {
		return err
	}
	defer bank.Free()
	for k, l := range layers {
		id, err := bank.Add(l.A(), l.B(), l.Scale())
		if err != nil {
			return err
		}
		if id != k {
			return fmt.Errorf("adapter %d got id %d", k, id)
		}
	}

	// A mixed batch: each request names an adapter, or -1 for the base layer.
	ids := make([]int32, n)
	for i := range ids {
		ids[i] = int32(rng.IntN(tasks+1)) - 1
	}
	xh := randn(rng, n*in, 1)
	x := must(lora.NewMatrixFrom(n, in, xh))
	y := must(lora.NewMatrix(n, out))
	ref := must(lora.NewMatrix(n, out))
	defer x.Free()
	defer y.Free()
	defer ref.Free()
	if err := bank.Forward(y, x, ids); err != nil {
		return err
	}
	got, err := y.ReadAll()
	if err != nil {
		return err
	}

	// Each row against its adapter's own Layer (or the base layer).
	own := map[int][]float32{}
	for k := -1; k < tasks; k++ {
		if k < 0 {
			err = lora.Linear(ref, x, w)
		} else {
			err = layers[k].Forward(ref, x)
		}
		if err == nil {
			own[k], err = ref.ReadAll()
		}
		if err != nil {
			return err
		}
	}
	fmt.Printf("\n%4s  %-8s  %s\n", "row", "adapter", "max |Bank − own Layer| / max |y|")
	worst := 0.0
	for i, id := range ids {
		want := own[int(id)]
		var diff, mag float64
		for j := range out {
			diff = max(diff, math.Abs(float64(got[i*out+j]-want[i*out+j])))
			mag = max(mag, math.Abs(float64(want[i*out+j])))
		}
		rel := diff / max(mag, 1e-30)
		worst = max(worst, rel)
		name := "base"
		if id >= 0 {
			name = fmt.Sprint(id)
		}
		fmt.Printf("%4d  %-8s  %.2g\n", i, name, rel)
	}
	if worst > 1e-4 {
		return fmt.Errorf("a row differs from its own Layer by %.3g", worst)
	}

	// The batch time: one Bank.Forward against a loop over the Layers, each
	// on its own rows (gathered beforehand, not timed).
	type part struct {
		layer *lora.Layer
		x, y  *lora.Matrix
	}
	var parts []part
	for k := -1; k < tasks; k++ {
		var rows []float32
		for i, id := range ids {
			if int(id) == k {
				rows = append(rows, xh[i*in:(i+1)*in]...)
			}
		}
		if len(rows) == 0 {
			continue
		}
		var l *lora.Layer
		if k >= 0 {
			l = layers[k]
		}
		p := part{l, must(lora.NewMatrixFrom(len(rows)/in, in, rows)), must(lora.NewMatrix(len(rows)/in, out))}
		defer p.x.Free()
		defer p.y.Free()
		parts = append(parts, p)
	}
	timeIt := func(f func() error) (time.Duration, error) {
		best := time.Duration(math.MaxInt64)
		for range 20 {
			t0 := time.Now()
			if err := f(); err != nil {
				return 0, err
			}
			if err := lora.Sync(); err != nil {
				return 0, err
			}
			best = min(best, time.Since(t0))
		}
		return best, nil
	}
	tBank, err := timeIt(func() error { return bank.Forward(y, x, ids) })
	if err != nil {
		return err
	}
	tLoop, err := timeIt(func() error {
		for _, p := range parts {
			var err error
			if p.layer == nil {
				err = lora.Linear(p.y, p.x, w)
			} else {
				err = p.layer.Forward(p.y, p.x)
			}
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	fmt.Printf("\nbatch of %d rows over %d adapters and the base: Bank.Forward %v, loop over Layers %v (%.2f×)\n",
		n, tasks, tBank, tLoop, tLoop.Seconds()/tBank.Seconds())
	return nil
}
