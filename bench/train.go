package main

import (
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/golora/lora/internal/perf"
)

// TrainRow is one line of the Training table: Forward, Backward with and
// without dx, and an AdamW step, timed in the same rounds.
type TrainRow struct {
	perf.Shape
	Forward  Stat    `json:"forward"`
	Backward Stat    `json:"backward"`
	NoDX     Stat    `json:"backward_no_dx"`
	Step     Stat    `json:"adamw_step"`
	BwdOver  float64 `json:"backward_over_forward"`
	NoDXOver float64 `json:"backward_no_dx_over_forward"`
	StepOver float64 `json:"step_over_forward"`
	GFLOPs   float64 `json:"backward_gflops"`
	// The peer, when -peer is given: PyTorch's forward + backward of the
	// unmerged layer with W frozen, less its unmerged forward.
	PeerBackward float64 `json:"peer_backward_s,omitempty"`
	OverPeer     float64 `json:"backward_over_peer,omitempty"`
}

func trainRow(cfg config, s perf.Shape) (TrainRow, error) {
	t, err := perf.NewTrain(s, perf.Copies(s))
	if err != nil {
		return TrainRow{}, err
	}
	defer t.Free()
	// The first step of each layer allocates its optimizer state.
	for range t.Layers {
		if err := t.Step(); err != nil {
			return TrainRow{}, err
		}
	}
	stats, err := measure([]op{
		{"forward", t.Forward}, {"backward", t.Backward}, {"backward without dx", t.BackwardNoDX}, {"AdamW step", t.Step},
	}, cfg.minTime, cfg.minReps, cfg.maxReps)
	if err != nil {
		return TrainRow{}, err
	}
	f := stats[0].Median
	return TrainRow{
		Shape: s, Forward: stats[0], Backward: stats[1], NoDX: stats[2], Step: stats[3],
		BwdOver: stats[1].Median / f, NoDXOver: stats[2].Median / f, StepOver: stats[3].Median / f,
		GFLOPs: s.BackwardFLOP(true) / stats[1].Median / 1e9,
	}, nil
}

func printTrain(w io.Writer, rows []TrainRow) {
	if len(rows) == 0 {
		return
	}
	peer := rows[0].PeerBackward > 0
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Training: Backward computes dA, dB and dx (T = x·Aᵀ, U = dy·B, dB = s·dyᵀ·T, dA = s·Uᵀ·x, dx = dy·W + s·U·A);")
	fmt.Fprintln(w, "without dx as for a model's first layer; an AdamW step updates A and B. Ratios are to Forward in the same run.")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	head := "in=out\tr\tn\tforward\tbackward\tno dx\tAdamW step\tbackward/fwd\tno dx/fwd\tstep/fwd\tGFLOP/s\t"
	if peer {
		head += "peer backward\tbackward/peer\t"
	}
	fmt.Fprintln(tw, head)
	for _, r := range rows {
		line := fmt.Sprintf("%d\t%d\t%d\t%s\t%s\t%s\t%s\t%.3f×\t%.3f×\t%.4f×\t%.1f\t",
			r.In, r.R, r.N, r.Forward, r.Backward, r.NoDX, r.Step, r.BwdOver, r.NoDXOver, r.StepOver, r.GFLOPs)
		if peer {
			line += fmt.Sprintf("%s\t%.2f×\t", ms(r.PeerBackward), r.OverPeer)
		}
		fmt.Fprintln(tw, line)
	}
	tw.Flush()
}
