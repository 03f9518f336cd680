// Command finetune trains a LoRA adapter end to end: a frozen layer W, a
// teacher W* = W + ΔW* whose change ΔW* has low rank, and a student adapter
// that learns ΔW* from the teacher's outputs with AdamW, W untouched. It then
// compares what LoRA trains and stores with full fine-tuning, merges the
// adapter and checks the merged layer against the teacher, and times Forward
// unmerged and merged.
//
// It exits with status 1 when a check fails: W changed by training, the
// merged layer's outputs differing from the unmerged ones, the merged layer
// no closer to the teacher on held-out inputs than the base layer, or
// farther from it than -max-err when that is set.
//
//	go run ./examples/finetune                  in = out = 1024, rank 4
//	go run ./examples/finetune -in 4096 -out 4096 -epochs 5
//	go run -tags cuda ./examples/finetune       the same on the GPU
//
// A small run, well under a second, that must learn the teacher closely:
//
//	go run ./examples/finetune -in 96 -out 128 -examples 1024 -epochs 20 -lr 0.02 -max-err 1
package main

import (
	"errors"
	"flag"
	"fmt"
	"log"
	"math"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/golora/lora"
)

type config struct {
	in, out, rank, teacherRank int
	examples, batch, epochs    int
	lr, maxErr                 float64
	seed                       uint64
}

func main() {
	var c config
	flag.IntVar(&c.in, "in", 1024, "input features of the layer")
	flag.IntVar(&c.out, "out", 1024, "output features of the layer")
	flag.IntVar(&c.rank, "rank", 4, "rank of the student adapter")
	flag.IntVar(&c.teacherRank, "teacher-rank", 4, "rank of the teacher's change ΔW*")
	flag.IntVar(&c.examples, "examples", 4096, "training examples")
	flag.IntVar(&c.batch, "batch", 64, "examples per step")
	flag.IntVar(&c.epochs, "epochs", 10, "passes over the training examples")
	flag.Float64Var(&c.lr, "lr", 0.01, "AdamW's peak learning rate, annealed to 0 on a cosine")
	flag.Uint64Var(&c.seed, "seed", 1, "seed of the data and of the adapter's initialisation")
	flag.Float64Var(&c.maxErr, "max-err", 0, "most RMS error, in percent, of the merged layer against the teacher on held-out inputs (0: no bound)")
	flag.Parse()
	log.SetFlags(0)
	if c.in < 1 || c.out < 1 || c.rank < 1 || c.teacherRank < 1 || c.batch < 1 || c.examples < c.batch || c.epochs < 1 || !(c.maxErr >= 0) {
		log.Fatal("finetune: want positive sizes, -examples ≥ -batch and -max-err ≥ 0")
	}
	if err := run(c); err != nil {
		log.Fatal(err)
	}
}

// mats frees the matrices it was given, in one deferred call.
type mats []*lora.Matrix

func (ms *mats) add(m *lora.Matrix, err error) *lora.Matrix {
	if err != nil {
		log.Fatal(err)
	}
	*ms = append(*ms, m)
	return m
}

func (ms mats) free() {
	for _, m := range ms {
		m.Free()
	}
}

func run(c config) error {
	rng := rand.New(rand.NewPCG(c.seed, 0x5eed))
	randn := func(n int, std float64) []float32 {
		s := make([]float32, n)
		for i := range s {
			s[i] = float32(rng.NormFloat64() * std)
		}
		return s
	}
	var ms mats
	defer func() { ms.free() }()

	// The frozen base weight, as nn.Linear initialises it in scale, and the
	// teacher W* = W + B*·A*, a change of rank teacherRank about as large
	// as W.
	wData := randn(c.out*c.in, 1/math.Sqrt(float64(c.in)))
	w := ms.add(lora.NewMatrixFrom(c.out, c.in, wData))
	wStar := ms.add(lora.NewMatrixFrom(c.out, c.in, wData))
	aStar, err := lora.NewMatrixFrom(c.teacherRank, c.in, randn(c.teacherRank*c.in, 1/math.Sqrt(float64(c.in))))
	if err != nil {
		return err
	}
	bStar, err := lora.NewMatrixFrom(c.out, c.teacherRank, randn(c.out*c.teacherRank, 1/math.Sqrt(float64(c.teacherRank))))
	if err != nil {
		return err
	}
	teacher, err := lora.NewLayerFrom(wStar, aStar, bStar, 1)
	if err != nil {
		return err
	}
	if err := teacher.Merge(); err != nil {
		return err
	}
	teacher.Free() // wStar keeps W + B*·A*

	// Training batches and a held-out test batch: x ~ N(0, 1), targets the
	// teacher's outputs x·W*ᵀ.
	steps := c.examples / c.batch
	xs, ts := make([]*lora.Matrix, steps), make([]*lora.Matrix, steps)
	for i := range steps {
		xs[i] = ms.add(lora.NewMatrixFrom(c.batch, c.in, randn(c.batch*c.in, 1)))
		ts[i] = ms.add(lora.NewMatrix(c.batch, c.out))
		if err := lora.Linear(ts[i], xs[i], wStar); err != nil {
			return err
		}
	}
	xTest := ms.add(lora.NewMatrixFrom(c.batch, c.in, randn(c.batch*c.in, 1)))
	tTest := ms.add(lora.NewMatrix(c.batch, c.out))
	if err := lora.Linear(tTest, xTest, wStar); err != nil {
		return err
	}
	base := ms.add(lora.NewMatrix(c.batch, c.out)) // the base layer's outputs, x·Wᵀ
	if err := lora.Linear(base, xTest, w); err != nil {
		return err
	}

	// The student: a new adapter on W with PEFT's initialisation (B = 0),
	// so that training starts from the base layer.
	layer, err := lora.NewLayer(w, lora.Config{Rank: c.rank, Seed: c.seed})
	if err != nil {
		return err
	}
	defer layer.Free()
	opt := lora.NewAdamW(float32(c.lr))
	defer opt.Free()
	y := ms.add(lora.NewMatrix(c.batch, c.out))
	dy := ms.add(lora.NewMatrix(c.batch, c.out))
	dA := ms.add(lora.NewMatrix(c.rank, c.in))
	dB := ms.add(lora.NewMatrix(c.out, c.rank))

	fmt.Printf("backend %s: W %d×%d frozen, teacher W* = W + ΔW* with ΔW* of rank %d\n",
		lora.Backend(), c.out, c.in, c.teacherRank)
	fmt.Printf("student: rank-%d adapter from PEFT's init, AdamW lr %g on a cosine schedule, %d examples in batches of %d\n\n",
		c.rank, c.lr, steps*c.batch, c.batch)

	var start float64
	for epoch := 1; epoch <= c.epochs; epoch++ {
		t0 := time.Now()
		var sum float64
		for i := range steps {
			// The learning rate falls from lr to 0 over the run.
			done := float64((epoch-1)*steps+i) / float64(c.epochs*steps)
			opt.LR = float32(c.lr * 0.5 * (1 + math.Cos(math.Pi*done)))
			if err := layer.Forward(y, xs[i]); err != nil {
				return err
			}
			loss, err := lora.MSE(dy, y, ts[i])
			if err != nil {
				return err
			}
			if epoch == 1 && i == 0 {
				start = float64(loss)
			}
			sum += float64(loss)
			// The inputs are data, so Backward needs no dx.
			if err := layer.Backward(nil, dA, dB, dy, xs[i]); err != nil {
				return err
			}
			if err := opt.Step(layer, dA, dB); err != nil {
				return err
			}
		}
		if err := lora.Sync(); err != nil {
			return err
		}
		mean := sum / float64(steps)
		fmt.Printf("epoch %2d: loss %.3e = %.2e of the start, %4.0f steps/s\n",
			epoch, mean, mean/start, float64(steps)/time.Since(t0).Seconds())
	}

	got := make([]float32, c.out*c.in)
	if err := w.Read(got); err != nil {
		return err
	}
	frozen := slices.Equal(got, wData)

	trainable, full := c.rank*(c.in+c.out), c.in*c.out
	fmt.Printf("\nW unchanged by training: %v\n", frozen)
	fmt.Printf("trainable parameters: r·(in+out) = %d against in·out = %d for full fine-tuning (%.2f%%)\n",
		trainable, full, 100*float64(trainable)/float64(full))
	fmt.Printf("AdamW state (2 floats per parameter): %s for the adapter, %s for full fine-tuning\n",
		size(opt.StateBytes()), size(8*int64(full)))

	// Forward unmerged, then merged: the same outputs, at the base layer's cost.
	unmerged := ms.add(lora.NewMatrix(c.batch, c.out))
	if err := layer.Forward(unmerged, xTest); err != nil {
		return err
	}
	tUnmerged, err := timeForward(layer, y, xTest)
	if err != nil {
		return err
	}
	if err := layer.Merge(); err != nil {
		return err
	}
	merged := ms.add(lora.NewMatrix(c.batch, c.out))
	if err := layer.Forward(merged, xTest); err != nil {
		return err
	}
	tMerged, err := timeForward(layer, y, xTest)
	if err != nil {
		return err
	}

	um, mg, tg, bs := read(unmerged), read(merged), read(tTest), read(base)
	var diff, mag, se, sb, st float64
	for i := range mg {
		diff = math.Max(diff, math.Abs(float64(mg[i]-um[i])))
		mag = math.Max(mag, math.Abs(float64(um[i])))
		e, eb := float64(mg[i]-tg[i]), float64(bs[i]-tg[i])
		se += e * e
		sb += eb * eb
		st += float64(tg[i]) * float64(tg[i])
	}
	rmsErr, baseErr := 100*math.Sqrt(se/st), 100*math.Sqrt(sb/st)
	fmt.Printf("merged layer: largest |merged − unmerged| output %.2g; error against the teacher on held-out inputs %.3g%% (RMS), the base layer's %.3g%%\n",
		diff, rmsErr, baseErr)
	fmt.Printf("Forward, n = %d: unmerged %s, merged %s (%+.1f%%)\n",
		c.batch, ms2(tUnmerged), ms2(tMerged), 100*(tMerged/tUnmerged-1))

	switch {
	case !frozen:
		return errors.New("finetune: training changed the frozen W")
	case !(diff <= 1e-4*mag):
		return fmt.Errorf("finetune: the merged layer's outputs differ from the unmerged ones by %.3g, %.3g of the largest", diff, diff/mag)
	case !(rmsErr < baseErr):
		return fmt.Errorf("finetune: the merged layer misses the teacher by %.3g%% (RMS), no closer than the base layer's %.3g%%", rmsErr, baseErr)
	case c.maxErr > 0 && !(rmsErr <= c.maxErr):
		return fmt.Errorf("finetune: the merged layer misses the teacher by %.3g%% (RMS), more than -max-err %g%%", rmsErr, c.maxErr)
	}
	return nil
}

// timeForward returns the median time of one Forward over five rounds.
func timeForward(l *lora.Layer, y, x *lora.Matrix) (float64, error) {
	const calls, rounds = 20, 5
	var times []float64
	for round := range rounds + 1 {
		t0 := time.Now()
		for range calls {
			if err := l.Forward(y, x); err != nil {
				return 0, err
			}
		}
		if err := lora.Sync(); err != nil {
			return 0, err
		}
		if round > 0 { // the first round warms up
			times = append(times, time.Since(t0).Seconds()/calls)
		}
	}
	slices.Sort(times)
	return times[len(times)/2], nil
}

func read(m *lora.Matrix) []float32 {
	r, c := m.Dims()
	s := make([]float32, r*c)
	if err := m.Read(s); err != nil {
		log.Fatal(err)
	}
	return s
}

func size(b int64) string {
	switch {
	case b >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20))
	case b >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(b)/(1<<10))
	}
	return fmt.Sprintf("%d B", b)
}

func ms2(sec float64) string {
	if sec < 1e-3 {
		return fmt.Sprintf("%.1f µs", sec*1e6)
	}
	return fmt.Sprintf("%.2f ms", sec*1e3)
}
