package lora

import "fmt"

// stage runs a backend function on float32 stand-ins of the half-precision
// operands of one call: each F16 or BF16 input is widened into a float32
// temporary (exactly), each half output gets a float32 temporary, and only
// when the function succeeds are the temporaries rounded into the caller's
// outputs, once, to nearest even. An F32 operand (and a nil one) is passed
// as it is.
type stage struct {
	temps []*Matrix
	outs  [][2]*Matrix // the caller's output, its float32 temporary
}

// in returns m, or a float32 copy of a half-precision m.
func (st *stage) in(m *Matrix) (*Matrix, error) {
	if m == nil || m.dt == F32 {
		return m, nil
	}
	t, err := st.temp(m)
	if err != nil {
		return nil, err
	}
	if err := be.convert(t, m); err != nil {
		return nil, err
	}
	return t, nil
}

// out returns m, or a float32 temporary that finish rounds into m.
func (st *stage) out(m *Matrix) (*Matrix, error) {
	if m == nil || m.dt == F32 {
		return m, nil
	}
	t, err := st.temp(m)
	if err != nil {
		return nil, err
	}
	st.outs = append(st.outs, [2]*Matrix{m, t})
	return t, nil
}

// inout returns m, or a float32 copy of m that finish rounds back into m.
func (st *stage) inout(m *Matrix) (*Matrix, error) {
	t, err := st.in(m)
	if err != nil || t == m {
		return t, err
	}
	st.outs = append(st.outs, [2]*Matrix{m, t})
	return t, nil
}

// temp returns a float32 matrix of m's shape, freed by free.
func (st *stage) temp(m *Matrix) (*Matrix, error) {
	buf, err := be.newTemp(m.rows * m.cols)
	if err != nil {
		return nil, fmt.Errorf("a float32 copy of the %v %s operand: %w", m.dt, m.shape(), err)
	}
	t := &Matrix{rows: m.rows, cols: m.cols, dt: F32, buf: buf, boundKnown: true}
	be.releaseOnCollect(t)
	st.temps = append(st.temps, t)
	return t, nil
}

// finish rounds the temporaries into the caller's outputs.
func (st *stage) finish() error {
	for _, o := range st.outs {
		if err := be.convert(o[0], o[1]); err != nil {
			return err
		}
	}
	return nil
}

// free releases the temporaries.
func (st *stage) free() {
	for _, t := range st.temps {
		be.releaseTemp(t)
	}
	st.temps, st.outs = nil, nil
}

// staged calls f with float32 stand-ins of ins and outs (see stage) and,
// when f succeeds, rounds the stand-ins of half outputs into them. inouts
// are read and written. Without half operands it calls f on them directly.
// Errors of the staging itself are prefixed "lora: op: " when op is not
// empty (for callers that do not wrap f's errors); f's pass as they are.
func staged(op string, ins, inouts, outs []*Matrix, f func(ins, inouts, outs []*Matrix) error) error {
	err, ferr := stagedRun(ins, inouts, outs, f)
	if err != nil && !ferr && op != "" {
		return fmt.Errorf("lora: %s: %w", op, err)
	}
	return err
}

// stagedRun is staged; ferr reports that err is f's.
func stagedRun(ins, inouts, outs []*Matrix, f func(ins, inouts, outs []*Matrix) error) (err error, ferr bool) {
	half := false
	for _, l := range [][]*Matrix{ins, inouts, outs} {
		for _, m := range l {
			half = half || (m != nil && m.dt != F32)
		}
	}
	if !half {
		return f(ins, inouts, outs), true
	}
	var st stage
	defer st.free()
	si := make([]*Matrix, len(ins))
	sio := make([]*Matrix, len(inouts))
	so := make([]*Matrix, len(outs))
	for i, m := range ins {
		if si[i], err = st.in(m); err != nil {
			return err, false
		}
	}
	for i, m := range inouts {
		if sio[i], err = st.inout(m); err != nil {
			return err, false
		}
	}
	for i, m := range outs {
		if so[i], err = st.out(m); err != nil {
			return err, false
		}
	}
	if err := f(si, sio, so); err != nil {
		return err, true
	}
	return st.finish(), false
}
