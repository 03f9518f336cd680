package main

import (
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
