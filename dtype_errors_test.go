package lora

// Refusals with half-precision operands: a refused call writes none of its
// outputs (see dtype_test.go; the Bank's in bank_dtype_test.go).

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/golora/lora/internal/reftest"
)

// TestDTypeErrorsLeaveOutputs: a refused call with half-precision operands
// (staged through float32) writes none of its outputs.
func TestDTypeErrorsLeaveOutputs(t *testing.T) {
	rng := rand.New(rand.NewPCG(81, 82))
	sh := dtShape(3, 13, 11, 2)
	for _, wdt := range dtAll {
		for _, iodt := range []DType{F16, BF16} {
			name := fmt.Sprintf("W=%v,io=%v", wdt, iodt)
			l, w, _, _, _ := dtLayer(t, rng, wdt, sh, 0.5)
			x, _ := dtOperand(t, iodt, sh.N, sh.In, reftest.Normal(rng, sh.N*sh.In, 1))
			xBad, _ := dtOperand(t, iodt, sh.N, sh.In+1, reftest.Normal(rng, sh.N*(sh.In+1), 1))
			y, _ := dtOperand(t, iodt, sh.N, sh.Out, reftest.Normal(rng, sh.N*sh.Out, 1))
			yBad, _ := dtOperand(t, iodt, sh.N+1, sh.Out, reftest.Normal(rng, (sh.N+1)*sh.Out, 1))
			dy, _ := dtOperand(t, iodt, sh.N, sh.Out, reftest.Normal(rng, sh.N*sh.Out, 1))
			dx, _ := dtOperand(t, iodt, sh.N, sh.In, reftest.Normal(rng, sh.N*sh.In, 1))
			dA, _ := dtOperand(t, F32, sh.R, sh.In, reftest.Normal(rng, sh.R*sh.In, 1))
			dB, _ := dtOperand(t, F32, sh.Out, sh.R, reftest.Normal(rng, sh.Out*sh.R, 1))
			dAhalf, _ := dtOperand(t, iodt, sh.R, sh.In, reftest.Normal(rng, sh.R*sh.In, 1))
			dBbad, _ := dtOperand(t, F32, sh.Out, sh.R+1, reftest.Normal(rng, sh.Out*(sh.R+1), 1))
			tg, _ := dtOperand(t, iodt, sh.N, sh.Out, reftest.Normal(rng, sh.N*sh.Out, 1))
			tgBad, _ := dtOperand(t, iodt, sh.N, sh.Out+1, reftest.Normal(rng, sh.N*(sh.Out+1), 1))
			bias, _ := dtOperand(t, iodt, 1, sh.Out, reftest.Normal(rng, sh.Out, 1))
			biasBad, _ := dtOperand(t, iodt, 1, sh.Out+1, reftest.Normal(rng, sh.Out+1, 1))
			freed, _ := dtOperand(t, iodt, sh.N, sh.In, reftest.Normal(rng, sh.N*sh.In, 1))
			freed.Free()
			all := dtSnap(t, "W", w, "A", l.A(), "B", l.B(), "x", x, "y", y, "dy", dy, "dx", dx,
				"dA", dA, "dB", dB, "target", tg, "bias", bias, "half dA", dAhalf)
			for _, c := range []struct {
				what string
				err  error
				want error
				op   string
			}{
				{"Forward, x of the wrong width", l.Forward(y, xBad), ErrShape, "Forward"},
				{"Forward, y of the wrong height", l.Forward(yBad, x), ErrShape, "Forward"},
				{"Forward, x freed", l.Forward(y, freed), ErrFreed, "Forward"},
				{"Linear, x of the wrong width", Linear(y, xBad, w), ErrShape, "Linear"},
				{"Backward, a half dA", l.Backward(dx, dAhalf, dB, dy, x), ErrDType, "Backward"},
				{"Backward, dB of the wrong shape", l.Backward(dx, dA, dBbad, dy, x), ErrShape, "Backward"},
				{"Backward, x of the wrong width", l.Backward(dx, dA, dB, dy, xBad), ErrShape, "Backward"},
				{"Backward, dx is x", l.Backward(x, dA, dB, dy, x), ErrAlias, "Backward"},
				{"Axpy, x of the wrong shape", Axpy(y, 2, yBad), ErrShape, "Axpy"},
				{"Axpy, y is x", Axpy(y, 2, y), ErrAlias, "Axpy"},
				{"AddBias, bias of the wrong width", AddBias(y, biasBad), ErrShape, "AddBias"},
				{"AddBias, bias freed", AddBias(y, freed), ErrFreed, "AddBias"},
			} {
				if c.err == nil {
					t.Errorf("%s: %s: no error", name, c.what)
					continue
				}
				dtWantErr(t, name+": "+c.what, c.err, c.want, c.op)
			}
			_, err := MSE(dy, y, tgBad)
			dtWantErr(t, name+": MSE, target of the wrong shape", err, ErrShape, "MSE")
			_, err = MSE(y, y, tg)
			dtWantErr(t, name+": MSE, dy is y", err, ErrAlias, "MSE")
			_, err = MSE(dy, y, freed)
			dtWantErr(t, name+": MSE, target freed", err, ErrFreed, "MSE")
			all.unchanged(t, name+": after refused calls")
		}
	}
}
