//go:build cuda || cudaemu

package lora

import (
	"fmt"
	"math"
	"slices"
	"unsafe"

	"github.com/golora/lora/cuda"
	"github.com/golora/lora/kernels"
)

// The GPU backend of Bank (kernels/bank.cu). Each adapter's A and B are
// matrices of their own; a device table of slots (A, B, r, s: three 8-byte
// words each, struct LoraBankSlot) tells the kernels where they are.
//
// For n ≤ kernels.BankNMax (decode) the ids travel packed in the kernels'
// parameters: a shrink that gathers each row's A, then, over an F32 W, the
// fused kernel that streams W once and adds each row's gathered adapter term
// before writing y. Over an F16, BF16 or NF4 W the base product is the
// forward kernels of W's dtype (be.linear, which read W as stored), and
// lora_bank_rowexpand then adds each row's gathered adapter term: y is read
// and written once more (n×out floats, against W's out×in halves or 4.5-bit
// NF4 codes that the base product streams).
// For larger n (prefill) the base product is enqueued first, then the rows
// are sorted by adapter on the host (bankGroups) and cut into tiles of at
// most kernels.BankRows rows of one adapter; the tiles and the permutation
// are copied to the device and the segmented shrink and expand are
// enqueued.
//
// Nothing waits for the stream: the copies of the tiles and of the table's
// slots are stream-ordered (cuda.CopyHtoD), so each runs after the kernels
// queued before it, which still read the old contents of the shared
// buffer or slot; Remove queues the slot's clearing, then the stream-ordered
// frees of A and B (cuda.Free), behind every Forward already queued.
//
// Dtypes. The Bank's kernels take float32 x and y. A 16-bit y gets a
// float32 temporary that the base product writes and the adapter terms add
// into, rounded into y once at the end. A 16-bit x is widened into a
// float32 copy for the Bank's own kernels only; the base product reads x as
// it is where its plan can (x in W's 16-bit dtype: the tensor cores at
// prefill on sm_80 and newer, lora_forward_small's variant at decode), and
// the float32 copy otherwise.

// bankBackend is the GPU backend's per-Bank state: the slot table.
type bankBackend struct {
	table cuda.Ptr
	host  []uint64 // the table's words, three per slot
}

func (b *Bank) backendInit() error {
	words := 3 * len(b.slots)
	p, err := cuda.Alloc(int64(words) * 8)
	if err != nil {
		return fmt.Errorf("the slot table: %w", devErr(err))
	}
	if err := cuda.Memset32(p, 0, int64(2*words)); err != nil {
		_ = cuda.Free(p)
		return devErr(err)
	}
	b.backend = bankBackend{table: p, host: make([]uint64, words)}
	return nil
}

func (b *Bank) backendFree() {
	_ = cuda.Free(b.backend.table) // a failure is sticky: the next call reports it
	b.backend = bankBackend{}
}

// backendSet writes slot id of the table: the adapter s, or a free slot
// when s is nil. The copy is in stream order, after the work queued before
// it, so Forward calls already queued see the table they were checked with.
func (b *Bank) backendSet(id int, s *bankSlot, _ []float32) error {
	w := b.backend.host[3*id : 3*id+3]
	if s == nil {
		w[0], w[1], w[2] = 0, 0, 0
	} else {
		w[0], w[1] = uint64(s.a.buf.p), uint64(s.b.buf.p)
		w[2] = uint64(uint32(s.a.rows)) | uint64(math.Float32bits(s.scale))<<32
	}
	return devErr(cuda.CopyHtoD(b.backend.table+cuda.Ptr(24*id), unsafe.Pointer(&w[0]), 24))
}

// forward enqueues y = x·Wᵀ plus each row's adapter term, x and y of any
// float dtype (see Dtypes above). Nothing is written to y on an error.
func (b *Bank) forward(y, x *Matrix, ids []int32) error {
	var st stage
	defer st.free()
	yf, err := st.out(y)
	if err != nil {
		return err
	}
	// xf: float32 x for the Bank's kernels, where they run; xl: x for the
	// base product.
	adapted := slices.ContainsFunc(ids, func(id int32) bool { return id >= 0 })
	var xf *Matrix
	if adapted || b.w.dt == F32 {
		if xf, err = st.in(x); err != nil {
			return err
		}
	}
	xl := x
	if xf != nil && !(x.dt.half() && x.dt == b.w.dt) {
		xl = xf
	}
	if err := b.forwardF32(yf, xl, xf, ids, adapted); err != nil {
		return err
	}
	return st.finish()
}

// bankMeta is the device scratch that holds a Forward's tiles, permutation
// and ids, used with dev held (see dev in device.go): the stream runs work in
// order, the copy into it included, so one buffer serves every caller: the
// kernels of a Forward queued earlier read their tiles before a later
// Forward's copy overwrites them.
var bankMeta devBuf

// bankMetaBuf returns a device buffer of at least n int32 words. Called
// with dev held.
func bankMetaBuf(n int) (cuda.Ptr, error) { return bankMeta.get(n, 1<<12) }

// forwardF32 enqueues y = x·Wᵀ plus each row's adapter term into a float32
// y: the base product from xl (x in its own dtype or in float32), the
// Bank's kernels from xf, x in float32 (nil when no row has an adapter and
// W is not F32).
func (b *Bank) forwardF32(y, xl, xf *Matrix, ids []int32, adapted bool) error {
	n, in, out := xl.rows, xl.cols, b.w.rows
	rmax := b.cfg.MaxRank
	if n > math.MaxInt32/max(rmax, 1) {
		return fmt.Errorf("n = %d with MaxRank %d does not fit the kernels' int: %w", n, rmax, ErrShape)
	}
	if gy := ceilDiv(rmax, kernels.BankShrinkKs); gy > 65535 {
		return fmt.Errorf("MaxRank %d above the GPU's grid limit: %w", rmax, ErrShape)
	}
	if gy := ceilDiv(out, kernels.BankExpandThreads); n > kernels.BankNMax && gy > 65535 {
		return fmt.Errorf("out = %d above the GPU's grid limit: %w", out, ErrShape)
	}
	if n <= kernels.BankNMax {
		return b.forwardSmall(y, xl, xf, ids, adapted)
	}
	perm, groups := bankGroups(ids)
	// meta: tiles (3 ints each), then perm.
	meta := make([]int32, 0, 3*(len(perm)/kernels.BankRows+len(groups))+len(perm))
	for _, g := range groups {
		for p := g.start; p < g.end; p += kernels.BankRows {
			meta = append(meta, int32(p), int32(min(kernels.BankRows, g.end-p)), g.id)
		}
	}
	ntiles := len(meta) / 3
	meta = append(meta, perm...)

	// The base product first, outside dev: the forward kernels manage their
	// own scratch. The stream runs the expand below after it.
	if err := be.linear(y, xl, b.w); err != nil {
		return err
	}
	if ntiles == 0 {
		return nil
	}
	dev.Lock()
	defer dev.Unlock()
	mp, err := bankMetaBuf(len(meta))
	if err != nil {
		return err
	}
	if err := cuda.CopyHtoD(mp, unsafe.Pointer(&meta[0]), int64(4*len(meta))); err != nil {
		return devErr(err)
	}
	tiles := mp
	permP := mp + cuda.Ptr(4*3*ntiles)
	t, err := scratch(n * rmax)
	if err != nil {
		return err
	}
	var k launchArgs
	k.mat(xf).ptr(b.backend.table).ptr(tiles).ptr(permP).ptr(t).int32(ntiles).int32(in).int32(rmax)
	if err := launch("lora_bank_shrink",
		cuda.Dim3{X: ntiles, Y: ceilDiv(rmax, kernels.BankShrinkKs), Z: 1},
		cuda.Dim3{X: kernels.BankShrinkThreads, Y: 1, Z: 1}, &k); err != nil {
		return err
	}
	var e launchArgs
	e.ptr(t).ptr(b.backend.table).ptr(tiles).ptr(permP).mat(y).int32(ntiles).int32(out).int32(rmax)
	return launch("lora_bank_expand",
		cuda.Dim3{X: ntiles, Y: ceilDiv(out, kernels.BankExpandThreads), Z: 1},
		cuda.Dim3{X: kernels.BankExpandThreads, Y: 1, Z: 1}, &e)
}

// bankPack packs n ≤ kernels.BankNMax ids into the six words the decode
// kernels take: ids[i] + 1 in 21 bits, three to a word (0 for -1).
func bankPack(ids []int32) [6]uint64 {
	var p [6]uint64
	for i, id := range ids {
		p[i/3] |= uint64(id+1) << (21 * (i % 3))
	}
	return p
}

// forwardSmall is forwardF32 for n ≤ kernels.BankNMax: the ids travel in
// the kernels' parameters, so nothing is copied from the host.
func (b *Bank) forwardSmall(y, xl, xf *Matrix, ids []int32, adapted bool) error {
	n, in, out := xl.rows, xl.cols, b.w.rows
	rmax := b.cfg.MaxRank
	p := bankPack(ids)
	if b.w.dt != F32 {
		// The base product first, outside dev: the forward kernels manage
		// their own scratch. The stream runs the adapter terms after it.
		if err := be.linear(y, xl, b.w); err != nil {
			return err
		}
		if !adapted {
			return nil
		}
	}
	dev.Lock()
	defer dev.Unlock()
	var t cuda.Ptr
	if adapted {
		var err error
		if t, err = scratch(n * rmax); err != nil {
			return err
		}
		var k launchArgs
		k.mat(xf).ptr(b.backend.table).ptr(t).int32(n).int32(in).int32(rmax)
		for _, w := range p {
			k.int64(int64(w))
		}
		if err := launch("lora_bank_rowshrink",
			cuda.Dim3{X: n, Y: ceilDiv(rmax, kernels.BankShrinkKs), Z: 1},
			cuda.Dim3{X: kernels.BankShrinkThreads, Y: 1, Z: 1}, &k); err != nil {
			return err
		}
	}
	if b.w.dt != F32 {
		var e launchArgs
		e.ptr(t).ptr(b.backend.table).mat(y).int32(n).int32(out).int32(rmax)
		for _, w := range p {
			e.int64(int64(w))
		}
		return launch("lora_bank_rowexpand",
			cuda.Dim3{X: ceilDiv(out, kernels.BankExpandThreads), Y: n, Z: 1},
			cuda.Dim3{X: kernels.BankExpandThreads, Y: 1, Z: 1}, &e)
	}
	var k launchArgs
	k.mat(xf).mat(b.w).ptr(t).ptr(b.backend.table).mat(y).int32(n).int32(in).int32(out).int32(rmax)
	for _, w := range p {
		k.int64(int64(w))
	}
	return launch("lora_bank_small",
		cuda.Dim3{X: ceilDiv(out, kernels.BankSmallRowsPerBlock), Y: 1, Z: 1},
		cuda.Dim3{X: kernels.BankSmallThreads, Y: 1, Z: 1}, &k)
}
