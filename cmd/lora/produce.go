package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"

	"github.com/golora/lora/peft"
)

// errStopped ends the producer after the writer failed.
var errStopped = errors.New("stopped")

// produce makes the chunks of every tensor of p, in order.
func (w *writer) produce(p *shardPlan, out chan<- chunk, stop <-chan struct{}) error {
	send := func(c chunk) error {
		select {
		case out <- c:
			return nil
		case <-stop:
			return errStopped
		}
	}
	get := func() (*buffer, error) {
		select {
		case b := <-w.free:
			return b, nil
		case <-stop:
			return nil, errStopped
		}
	}
	for i := range p.jobs {
		j := &p.jobs[i]
		if err := w.produceTensor(p.sh.st, j, send, get); err != nil {
			if err == errStopped {
				return err
			}
			return fmt.Errorf("%s: %w", quoteName(j.in.Name), err)
		}
	}
	return nil
}

// produceTensor makes the chunks of the tensor of j, as its action says,
// sending each with send and taking buffers with get.
func (w *writer) produceTensor(st *peft.Safetensors, j *job, send func(chunk) error, get func() (*buffer, error)) error {
	if j.act == actReplace {
		return w.replace(j, send, get)
	}
	sec, err := st.Section(j.in.Name)
	if err != nil {
		return err
	}
	if j.nf4 != nil {
		if j, err = w.withAbsmax(j); err != nil {
			return err
		}
	}
	switch j.act {
	case actCopy:
		return w.copyBytes(sec, send, get)
	case actConvert, actDequantize:
		return w.convert(sec, j, send, get)
	case actMerge:
		return w.mergeTensor(sec, j, send, get)
	}
	return fmt.Errorf("unknown action %d", j.act)
}

// copyBytes sends the bytes of sec as they are, in steps of copyStep.
func (w *writer) copyBytes(sec *io.SectionReader, send func(chunk) error, get func() (*buffer, error)) error {
	n := sec.Size()
	if n == 0 {
		return send(chunk{last: true})
	}
	for off := int64(0); off < n; {
		k := min(n-off, copyStep)
		b, err := get()
		if err != nil {
			return err
		}
		data := b.bytes(int(k))
		if _, err := sec.ReadAt(data, off); err != nil {
			w.free <- b
			return err
		}
		off += k
		if err := send(chunk{buf: b, data: data, last: off == n}); err != nil {
			return err
		}
	}
	return nil
}

// convert converts a tensor to the output dtype in steps of convertStep
// elements, reading it from r: a base tensor, or the bytes of an adapter's;
// or dequantizes a 4-bit weight, whose codes r holds.
func (w *writer) convert(r io.ReaderAt, j *job, send func(chunk) error, get func() (*buffer, error)) error {
	out := j.out.DType
	elems := j.in.Elements()
	if elems == 0 {
		return send(chunk{last: true})
	}
	what := "the conversion"
	if j.nf4 != nil {
		what = "the dequantization"
	}
	for done := int64(0); done < elems; {
		k := int(min(elems-done, convertStep))
		w.vals = grow(w.vals, k)
		if err := w.readValues(r, j, w.vals, done); err != nil {
			return err
		}
		b, err := get()
		if err != nil {
			return err
		}
		enc := b.bytes(k * out.Size())
		peft.EncodeFloats(enc, w.vals, out) // lengths agree
		if i := newNonFinite(enc, out, w.exempt); i >= 0 {
			w.free <- b
			return nonFiniteError(j, done+int64(i), w.vals[i], what)
		}
		done += int64(k)
		if err := send(chunk{buf: b, data: enc, last: done == elems}); err != nil {
			return err
		}
	}
	return nil
}

// readValues reads the elements at:at+len(vals) of the tensor of j from r
// into vals as float32, and the indices in vals of those that are NaN or
// ±Inf into w.exempt. A 4-bit weight is dequantized, into finite values.
func (w *writer) readValues(r io.ReaderAt, j *job, vals []float32, at int64) error {
	if j.nf4 != nil {
		w.exempt = w.exempt[:0]
		return w.dequantize(r, j.nf4, vals, at)
	}
	in := j.in.DType
	direct := in == peft.F32 && peft.NativeF32() // read straight into vals
	var raw []byte
	if direct {
		raw = peft.Float32Bytes(vals)
	} else {
		w.raw = grow(w.raw, len(vals)*in.Size())
		raw = w.raw
	}
	if _, err := r.ReadAt(raw, at*int64(in.Size())); err != nil {
		return err
	}
	w.exempt = nonFiniteIndices(w.exempt[:0], raw, in)
	if direct {
		return nil
	}
	return peft.DecodeFloats(vals, raw, in)
}

// replace sends the adapter's tensor that replaces the base tensor of j,
// converted to the output dtype where it differs.
func (w *writer) replace(j *job, send func(chunk) error, get func() (*buffer, error)) error {
	t := j.full
	if t.DType == j.out.DType {
		return send(chunk{data: t.Data, last: true})
	}
	jt := *j
	jt.in.DType = t.DType // the adapter's tensor, in its own dtype
	jt.nf4 = nil          // and not 4-bit, whatever the base tensor was
	return w.convert(bytes.NewReader(t.Data), &jt, send, get)
}
