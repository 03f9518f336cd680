package main

import (
	"errors"
	"fmt"
	"io"
	"math/bits"
	"slices"
	"sync/atomic"

	"github.com/golora/lora"
	"github.com/golora/lora/peft"
)

// mergeTensor reads W in blocks of rows, adds the module's update to each with
// package lora, and makes each block a chunk. The rows of ΔW are
// independent: rows i0:i1 of W get s·B[i0:i1]·A, and rows j0:j1 of a weight
// stored [in, out] get s·(Aᵀ)[j0:j1]·Bᵀ.
//
// An F16 or BF16 weight written in its own dtype merges through a
// lora.Matrix of that dtype: its 16-bit patterns go in as they are read and
// come out as they are written, and Merge forms each element in float32 and
// rounds it once to the dtype, so the result is the float32 path's, bit for
// bit, with half of its memory. Every other weight is widened to float32,
// merged, and rounded once to the output dtype; a 4-bit weight is
// dequantized into float32 a block at a time, each value exact.
func (w *writer) mergeTensor(sec *io.SectionReader, j *job, send func(chunk) error, get func() (*buffer, error)) error {
	rows, cols := j.in.Shape[0], j.in.Shape[1]
	h := blockRows(rows, cols, j.module.Rank)
	dt := lora.F32
	if j.nf4 == nil && halfMerge(j.in.DType, j.out.DType) {
		dt = loraDType(j.in.DType)
	}
	bm, err := w.blocksFor(dt, h, cols, j.module)
	if err != nil {
		return err
	}
	for i0 := 0; i0 < rows; i0 += h {
		n := min(h, rows-i0)
		if dt != lora.F32 {
			err := w.mergeHalfBlock(sec, j, bm, i0, n, send, get)
			if err == nil {
				halfBlocks.Add(1)
				continue
			}
			if !errors.Is(err, lora.ErrDType) {
				return err
			}
			// A backend whose Merge does not take this dtype: the rest
			// of the weight in float32, which gives the same bits.
			dt = lora.F32
			if bm, err = w.blocksFor(dt, h, cols, j.module); err != nil {
				return err
			}
		}
		if err := w.mergeBlock(sec, j, bm, i0, n, send, get); err != nil {
			return err
		}
	}
	return nil
}

// halfBlocks counts the blocks merged through an F16 or BF16 W: the tests
// look at it.
var halfBlocks atomic.Int64

// halfMerge reports whether a weight of dtype in, written as out, merges
// through a lora.Matrix of its own dtype: F16 or BF16 kept as it is.
// Converted to another dtype, it merges in float32 and is rounded once to
// that dtype, as a half W would round twice.
func halfMerge(in, out peft.DType) bool {
	return in == out && (in == peft.F16 || in == peft.BF16)
}

// loraDType returns the lora.DType of the safetensors dtype d: F16, BF16,
// and F32 for every other.
func loraDType(d peft.DType) lora.DType {
	switch d {
	case peft.F16:
		return lora.F16
	case peft.BF16:
		return lora.BF16
	}
	return lora.F32
}

// blocksFor returns the block matrices of a merge of mod's weight in
// blocks of h rows of cols, W of dtype dt, with A' (r×cols) written: A, or
// Bᵀ for a weight stored [in, out].
func (w *writer) blocksFor(dt lora.DType, h, cols int, mod *peft.Module) (*blockMats, error) {
	r := mod.Rank
	bm, err := w.blocks.get(dt, h, cols, r)
	if err != nil {
		return nil, err
	}
	if mod.Transposed() {
		at := grow(bm.host, r*cols)
		for o := range cols {
			for k := range r {
				at[k*cols+o] = mod.B[o*r+k]
			}
		}
		bm.host = at
		err = bm.a.Write(at)
	} else {
		err = bm.a.Write(mod.A)
	}
	if err != nil {
		return nil, err
	}
	return bm, nil
}

// writeBBlock writes B's rows i0:i0+n, or Aᵀ's, into bm.b, and zero rows
// after them up to h.
func writeBBlock(bm *blockMats, mod *peft.Module, i0, n int) error {
	r := mod.Rank
	bBlock := grow(bm.bHost, bm.h*r)
	bm.bHost = bBlock
	clear(bBlock[n*r:])
	if mod.Transposed() {
		for i := range n {
			for k := range r {
				bBlock[i*r+k] = mod.A[k*mod.In+i0+i]
			}
		}
	} else {
		copy(bBlock, mod.B[i0*r:(i0+n)*r])
	}
	return bm.b.Write(bBlock)
}

// mergeBlock merges rows i0:i0+n of W in float32 and rounds them once to
// the output dtype.
func (w *writer) mergeBlock(sec *io.SectionReader, j *job, bm *blockMats, i0, n int, send func(chunk) error, get func() (*buffer, error)) error {
	mod := j.module
	h, cols := bm.h, bm.cols
	outD := j.out.DType
	native := peft.NativeF32()
	// W's rows i0:i0+n, zero rows after them up to h.
	vals := grow(w.vals, h*cols)
	w.vals = vals
	if err := w.readValues(sec, j, vals[:n*cols], int64(i0)*int64(cols)); err != nil {
		return err
	}
	clear(vals[n*cols:])
	// Elements the base already holds as NaN or ±Inf (such as a mask of
	// -Inf) stay as they are, as W + ΔW keeps them in PyTorch: they are
	// merged as 0 and put back.
	w.saved = w.saved[:0]
	for _, i := range w.exempt {
		w.saved = append(w.saved, vals[i])
		vals[i] = 0
	}
	if err := writeBBlock(bm, mod, i0, n); err != nil {
		return err
	}
	if err := bm.w.Write(vals); err != nil {
		return err
	}
	layer, err := lora.NewLayerFrom(bm.w, bm.a, bm.b, mod.Scale)
	if err != nil {
		return err
	}
	if err := layer.Merge(); err != nil {
		return err
	}
	b, err := get()
	if err != nil {
		return err
	}
	var enc []byte
	if outD == peft.F32 && native {
		// Read the merged block straight into the output buffer.
		v := b.floats(h * cols)
		if err := bm.w.Read(v); err != nil {
			w.free <- b
			return err
		}
		vals = v
		restore(vals, w.exempt, w.saved)
		enc = peft.Float32Bytes(v[:n*cols])
	} else {
		if err := bm.w.Read(vals); err != nil {
			w.free <- b
			return err
		}
		restore(vals, w.exempt, w.saved)
		enc = b.bytes(n * cols * outD.Size())
		peft.EncodeFloats(enc, vals[:n*cols], outD) // lengths agree
	}
	if i := newNonFinite(enc, outD, w.exempt); i >= 0 {
		w.free <- b
		return nonFiniteError(j, int64(i0)*int64(cols)+int64(i), vals[i], "the merge")
	}
	return send(chunk{buf: b, data: enc, last: i0+n == j.in.Shape[0]})
}

// mergeHalfBlock merges rows i0:i0+n of an F16 or BF16 weight kept in its
// dtype through bm.w, of that dtype: the rows are read into an output
// buffer, stored with WriteBits, merged, and read back into the same buffer
// with ReadBits. A merge that would overflow the dtype, which Merge refuses,
// is done again in float32 to say which element overflows and to what.
func (w *writer) mergeHalfBlock(sec *io.SectionReader, j *job, bm *blockMats, i0, n int, send func(chunk) error, get func() (*buffer, error)) error {
	mod := j.module
	h, cols := bm.h, bm.cols
	d := j.in.DType
	b, err := get()
	if err != nil {
		return err
	}
	pats := b.halves(h * cols)
	enc := b.bytes(2 * n * cols) // the memory of pats[:n*cols]
	if _, err := sec.ReadAt(enc, int64(i0)*int64(cols)*2); err != nil {
		w.free <- b
		return err
	}
	w.exempt = nonFiniteIndices(w.exempt[:0], enc, d)
	swapHalves(pats[:n*cols])
	clear(pats[n*cols:])
	// Elements already NaN or ±Inf are merged as 0 and put back, as the
	// float32 path puts them back: widened and rounded again, which makes a
	// signalling NaN quiet.
	w.saved16 = w.saved16[:0]
	for _, i := range w.exempt {
		w.saved16 = append(w.saved16, requantize(pats[i], d))
		pats[i] = 0
	}
	err = writeBBlock(bm, mod, i0, n)
	if err == nil {
		err = bm.w.WriteBits(pats)
	}
	var layer *lora.Layer
	if err == nil {
		layer, err = lora.NewLayerFrom(bm.w, bm.a, bm.b, mod.Scale)
	}
	if err == nil {
		err = layer.Merge()
	}
	if err == nil {
		err = bm.w.ReadBits(pats)
	}
	if err != nil {
		w.free <- b
		if errors.Is(err, lora.ErrNonFinite) {
			return w.locateOverflow(sec, j, i0, n, err, get)
		}
		return err
	}
	for k, i := range w.exempt {
		pats[i] = w.saved16[k]
	}
	swapHalves(pats[:n*cols])
	if i := newNonFinite(enc, d, w.exempt); i >= 0 {
		// Merge refuses a result beyond the dtype's range, so this is not
		// reached; should it be, the float32 merge says where.
		w.free <- b
		return w.locateOverflow(sec, j, i0, n, fmt.Errorf("element %d of the block is not finite: %w", i, lora.ErrNonFinite), get)
	}
	return send(chunk{buf: b, data: enc, last: i0+n == j.in.Shape[0]})
}

// locateOverflow merges rows i0:i0+n of W again in float32, whose rounding
// to the output dtype finds the element that overflows, and returns the
// error that names it, as the float32 path does; or err, should that merge
// find none.
func (w *writer) locateOverflow(sec *io.SectionReader, j *job, i0, n int, err error, get func() (*buffer, error)) error {
	rows, cols := j.in.Shape[0], j.in.Shape[1]
	bm, berr := w.blocksFor(lora.F32, blockRows(rows, cols, j.module.Rank), cols, j.module)
	if berr != nil {
		return err
	}
	lerr := w.mergeBlock(sec, j, bm, i0, n, func(c chunk) error {
		w.free <- c.buf // not sent: the block is not written
		return nil
	}, get)
	if lerr != nil {
		return lerr
	}
	return err
}

// requantize returns the 16-bit pattern p of dtype d widened to float32 and
// rounded back: p itself, but for a signalling NaN, which becomes quiet.
func requantize(p uint16, d peft.DType) uint16 {
	if d == peft.F16 {
		return peft.Float32ToF16(peft.F16ToFloat32(p))
	}
	return peft.Float32ToBF16(peft.BF16ToFloat32(p))
}

// swapHalves converts 16-bit elements between the little-endian order of
// safetensors and this machine's, in place: nothing to do on a
// little-endian machine.
func swapHalves(h []uint16) {
	if peft.NativeF32() {
		return
	}
	for i, v := range h {
		h[i] = bits.ReverseBytes16(v)
	}
}

// restore sets v[at[k]] = saved[k] for every k.
func restore(v []float32, at []int, saved []float32) {
	for k, i := range at {
		v[i] = saved[k]
	}
}

// blockCache keeps the matrices of merges in blocks for reuse by later
// weights of the same block shape, most recently used first, a few at a
// time: allocating matrices for every weight costs more than the arithmetic
// on the GPU.
type blockCache struct{ entries []*blockMats }

// blockMats are the matrices of a merge in blocks of h rows of cols, rank
// r, W of dtype dt.
type blockMats struct {
	dt         lora.DType
	h, cols, r int
	w, a, b    *lora.Matrix // h×cols of dt, r×cols, h×r
	host       []float32    // scratch for A'
	bHost      []float32    // scratch for a block of B'
}

const maxCachedBlocks = 4

func (c *blockCache) get(dt lora.DType, h, cols, r int) (*blockMats, error) {
	for i, e := range c.entries {
		if e.dt == dt && e.h == h && e.cols == cols && e.r == r {
			c.entries = slices.Delete(c.entries, i, i+1)
			c.entries = slices.Insert(c.entries, 0, e)
			return e, nil
		}
	}
	e := &blockMats{dt: dt, h: h, cols: cols, r: r}
	var err error
	if e.w, err = lora.NewMatrixOf(dt, h, cols); err == nil {
		if e.a, err = lora.NewMatrix(r, cols); err == nil {
			e.b, err = lora.NewMatrix(h, r)
		}
	}
	if err != nil {
		e.release()
		return nil, err
	}
	c.entries = slices.Insert(c.entries, 0, e)
	if len(c.entries) > maxCachedBlocks {
		c.entries[len(c.entries)-1].release()
		c.entries = c.entries[:len(c.entries)-1]
	}
	return e, nil
}

func (e *blockMats) release() {
	for _, m := range []*lora.Matrix{e.w, e.a, e.b} {
		if m != nil {
			m.Free()
		}
	}
}

func (c *blockCache) free() {
	for _, e := range c.entries {
		e.release()
	}
	c.entries = nil
}
