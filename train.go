package lora

import (
	"fmt"
)

// Training: W stays frozen, only A and B learn. Backward gives the gradients
// of A and B (and of the layer's input, for the layer below), MSE a loss and
// its gradient, and AdamW and SGD update A and B in place, keeping their
// state (moments, momentum) on the backend next to A and B.

// Backward computes the gradients of the layer, given its input x (n×in)
// and the gradient dy (n×out) of a loss with respect to its output y. With
// s the layer's scale, T = x·Aᵀ and U = dy·B (both n×r), it writes
//
//	dA = s·Uᵀ·x              (r×in, like A)
//	dB = s·dyᵀ·T             (out×r, like B)
//	dx = dy·W + s·U·A        (n×in, like x), unless dx is nil
//
// On a merged layer dx = dy·W, since W then holds W + s·B·A; dA and dB are
// the same. Pass a nil dx when no gradient of the input is needed (the first
// layer of a model): it skips the only product as large as Forward's.
//
// dy, x and dx may each be F32, F16 or BF16 (dx rounded once to its dtype);
// dA and dB must be F32 (ErrDType), like A and B.
//
// dA, dB and dx are overwritten, not accumulated into. They must be distinct
// from each other, from dy and x, and from the layer's matrices. Backward may
// run concurrently with Forward and other Backward calls on the same layer,
// as long as their outputs are distinct.
func (l *Layer) Backward(dx, dA, dB, dy, x *Matrix) error {
	const op = "Backward"
	if l == nil {
		return fmt.Errorf("lora: %s: layer is nil: %w", op, ErrNil)
	}
	l.mu.RLock()
	defer l.mu.RUnlock()
	if err := l.check(op); err != nil {
		return err
	}
	args := []named{{dA, "dA"}, {dB, "dB"}, {dy, "dy"}, {x, "x"}}
	if dx != nil {
		args = append(args, named{dx, "dx"})
	}
	for _, m := range args {
		if err := m.m.usable(op, m.name); err != nil {
			return err
		}
		if err := wantFloat(op, m.name, m.m); err != nil {
			return err
		}
	}
	if err := wantF32(op, "dA", dA); err != nil {
		return err
	}
	if err := wantF32(op, "dB", dB); err != nil {
		return err
	}
	out, in, r := l.w.rows, l.w.cols, l.a.rows
	if x.cols != in {
		return fmt.Errorf("lora: %s: x is %s, want n×%d: %w", op, x.shape(), in, ErrShape)
	}
	n := x.rows
	if dy.rows != n || dy.cols != out {
		return fmt.Errorf("lora: %s: dy is %s, want %d×%d for x %s: %w", op, dy.shape(), n, out, x.shape(), ErrShape)
	}
	if dA.rows != r || dA.cols != in {
		return fmt.Errorf("lora: %s: dA is %s, want %d×%d like A: %w", op, dA.shape(), r, in, ErrShape)
	}
	if dB.rows != out || dB.cols != r {
		return fmt.Errorf("lora: %s: dB is %s, want %d×%d like B: %w", op, dB.shape(), out, r, ErrShape)
	}
	if dx != nil && (dx.rows != n || dx.cols != in) {
		return fmt.Errorf("lora: %s: dx is %s, want %d×%d like x: %w", op, dx.shape(), n, in, ErrShape)
	}
	outs := []named{{dA, "dA"}, {dB, "dB"}}
	if dx != nil {
		outs = append(outs, named{dx, "dx"})
	}
	ins := []named{{dy, "dy"}, {x, "x"}, {l.w, "the layer's W"}, {l.a, "the layer's A"}, {l.b, "the layer's B"}}
	if err := distinct(op, outs, ins); err != nil {
		return err
	}
	for _, o := range outs {
		o.m.forgetBound()
	}
	err := staged("", []*Matrix{dy, x}, nil, []*Matrix{dx}, func(in, _, out []*Matrix) error {
		return be.backward(out[0], dA, dB, in[0], in[1], l.w, l.a, l.b, l.scale, l.merged)
	})
	if err != nil {
		return fmt.Errorf("lora: %s: %w", op, err)
	}
	return nil
}

// named is an argument and its name in messages.
type named struct {
	m    *Matrix
	name string
}

// distinct reports ErrAlias unless every output is distinct from the other
// outputs and from every input.
func distinct(op string, outs, ins []named) error {
	for i, o := range outs {
		for _, p := range outs[i+1:] {
			if o.m == p.m {
				return fmt.Errorf("lora: %s: %s and %s are the same matrix: %w", op, o.name, p.name, ErrAlias)
			}
		}
		for _, in := range ins {
			if o.m == in.m {
				return fmt.Errorf("lora: %s: %s is also %s: %w", op, o.name, in.name, ErrAlias)
			}
		}
	}
	return nil
}

// MSE returns the mean squared error of y against target, both n×m,
//
//	loss = Σ (y − target)² / (n·m),
//
// the mean over every element as in PyTorch's nn.MSELoss, and writes its
// gradient with respect to y, dy = 2·(y − target)/(n·m), into dy, unless dy
// is nil. dy must be distinct from y and target. The sum is accumulated in
// more than float32 precision where the backend allows, and MSE waits for
// queued work, since it returns a number to the host.
func MSE(dy, y, target *Matrix) (float32, error) {
	const op = "MSE"
	if err := y.usable(op, "y"); err != nil {
		return 0, err
	}
	if err := target.usable(op, "target"); err != nil {
		return 0, err
	}
	if err := wantFloat(op, "y", y); err != nil {
		return 0, err
	}
	if err := wantFloat(op, "target", target); err != nil {
		return 0, err
	}
	if target.rows != y.rows || target.cols != y.cols {
		return 0, fmt.Errorf("lora: %s: target is %s, want %s like y: %w", op, target.shape(), y.shape(), ErrShape)
	}
	if dy != nil {
		if err := dy.usable(op, "dy"); err != nil {
			return 0, err
		}
		if err := wantFloat(op, "dy", dy); err != nil {
			return 0, err
		}
		if dy.rows != y.rows || dy.cols != y.cols {
			return 0, fmt.Errorf("lora: %s: dy is %s, want %s like y: %w", op, dy.shape(), y.shape(), ErrShape)
		}
		if err := distinct(op, []named{{dy, "dy"}}, []named{{y, "y"}, {target, "target"}}); err != nil {
			return 0, err
		}
		dy.forgetBound()
	}
	count := float64(y.rows) * float64(y.cols)
	var sum float64
	err := staged("", []*Matrix{y, target}, nil, []*Matrix{dy}, func(in, _, out []*Matrix) error {
		var err error
		sum, err = be.mse(out[0], in[0], in[1], float32(2/count))
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("lora: %s: %w", op, err)
	}
	return float32(sum / count), nil
}
