package lora

import (
	"fmt"
	"math"
	"sync"
)

// MaxBankCapacity bounds BankConfig.Capacity: ids are int32 and a Bank keeps
// a small record per slot up front.
const MaxBankCapacity = 1 << 20

// MaxBankRank bounds BankConfig.MaxRank. A rank may exceed min(in, out), as
// PEFT allows (an adapter of rank 80 on a 64×64 W); the bound keeps the GPU
// kernels' grids (one block row per 8 columns of x·Aᵀ, at most 65535) and the
// kernels' int32 sizes within range.
const MaxBankRank = 1 << 16

// BankConfig sizes a Bank up front.
type BankConfig struct {
	MaxRank  int // largest rank an adapter may have (1 ≤ MaxRank ≤ MaxBankRank)
	Capacity int // most adapters held at once (1 ≤ Capacity ≤ MaxBankCapacity)
}

// A Bank holds up to Capacity adapters (A_i r_i×in, B_i out×r_i, scale s_i)
// over one frozen base weight W (out×in), which it never modifies.
//
// Forward applies to each row of a batch the adapter that row names, in one
// batched step: the base product once for all rows, then each row's adapter
// term, the rows grouped by adapter. It is what a server holding many
// fine-tunings of one model needs, where W can hold only one merged ΔW.
//
// Forward may run from many goroutines at once into distinct outputs. Add,
// Remove and Free need exclusive use: the Bank serialises them against its
// own Forward calls. On the GPU, Forward returns once its work is queued,
// as Layer.Forward does: a batch of more than 16 rows copies the grouping
// of its rows to the device in stream order, without waiting for the work
// queued before it, and ids may be reused as soon as Forward returns.
// Remove and Free are stream-ordered too: a Forward queued before them
// still computes with the adapters they remove, and neither waits for it.
//
// The Bank reads W, it does not copy it: anything that writes W (a
// Layer.Merge or Unmerge on a layer sharing it, Write, WriteBits) changes
// the base of every later Forward, and Forward does not know whether W is
// merged. Keep a Bank's W unmerged, or give the Bank a W of its own.
//
// Dtypes. W may be F32, F16, BF16 or NF4. x and y may each be F32, F16 or
// BF16 (NF4 is refused with ErrDType). A and B given to Add may be F32, F16
// or BF16: the Bank keeps float32 copies holding their exact values. Every
// product uses W's exact values (NF4: float32(table[code])·absmax, as Read
// returns them) with float32 accumulation; each element of y is computed in
// float32 and rounded once to y's dtype. Costs, per Forward:
//
//   - an F32 W: the Bank's own kernels, W streamed once for the whole batch
//     and, on the GPU at n ≤ 16, y written once with the rows' adapter terms
//     fused in;
//   - an F16, BF16 or NF4 W: the base product by the kernels Linear runs for
//     that dtype (which read W as it is stored, never a dequantized copy of
//     it: 2 bytes an element, or about 0.56 for NF4 with blocks of 64), then
//     the rows' adapter terms added into y: y read and written once more
//     (n×out floats, small beside W's bytes at every n that matters);
//   - a half x or y: staged through float32 (a float32 copy of x, a
//     float32 y rounded into y once at the end), since the Bank's adapter
//     kernels take float32 activations: n×(in+out) floats more, read and
//     written once. On the GPU the base product reads an x in W's 16-bit
//     dtype as it is (on the tensor cores at n > 16 on sm_80 and newer,
//     where the planner chooses them), and x is widened only for the
//     adapter kernels, when a row has an adapter. Freeing the staging is
//     stream-ordered: such a Forward returns once its work is queued.
type Bank struct {
	mu      sync.RWMutex // Forward and Len hold it shared; Add, Remove and Free exclusively
	w       *Matrix
	cfg     BankConfig
	slots   []bankSlot
	held    int
	freed   bool
	backend bankBackend // the backend's per-Bank state
}

// bankSlot is one adapter of a Bank, or a free slot when a is nil.
type bankSlot struct {
	a, b  *Matrix // copies owned by the Bank
	scale float32
}

// NewBank returns an empty Bank over the base weight w (out×in), of any
// dtype. w is not copied: the Bank computes with it, never modifies it, and
// does not free it. cfg.MaxRank must be between 1 and MaxBankRank (it may
// exceed min(in, out)), cfg.Capacity between 1 and MaxBankCapacity.
func NewBank(w *Matrix, cfg BankConfig) (*Bank, error) {
	const op = "NewBank"
	if err := w.usable(op, "w"); err != nil {
		return nil, err
	}
	if cfg.MaxRank < 1 || cfg.MaxRank > MaxBankRank {
		return nil, fmt.Errorf("lora: %s: MaxRank %d, want 1 ≤ MaxRank ≤ MaxBankRank = %d "+
			"(the GPU kernels' grids and int32 sizes bound it): %w", op, cfg.MaxRank, MaxBankRank, ErrConfig)
	}
	if cfg.Capacity < 1 || cfg.Capacity > MaxBankCapacity {
		return nil, fmt.Errorf("lora: %s: Capacity %d, want 1 ≤ Capacity ≤ %d: %w",
			op, cfg.Capacity, MaxBankCapacity, ErrConfig)
	}
	b := &Bank{w: w, cfg: cfg, slots: make([]bankSlot, cfg.Capacity)}
	if err := b.backendInit(); err != nil {
		return nil, fmt.Errorf("lora: %s: %w", op, err)
	}
	return b, nil
}

// Config returns the configuration the Bank was made with.
func (b *Bank) Config() BankConfig {
	if b == nil {
		return BankConfig{}
	}
	return b.cfg
}

// W returns the base weight (nil on a nil Bank).
func (b *Bank) W() *Matrix {
	if b == nil {
		return nil
	}
	return b.w
}

// check reports whether the Bank and its W can be used by op. Called with
// b.mu held.
func (b *Bank) check(op string) error {
	if b.freed {
		return fmt.Errorf("lora: %s: bank is freed: %w", op, ErrFreed)
	}
	return b.w.usable(op, "W")
}

// hostCopy reads m into a new host slice and reports whether every element
// is finite.
func hostCopy(m *Matrix) ([]float32, bool, error) {
	h := make([]float32, m.rows*m.cols)
	if err := m.buf.read(h); err != nil {
		return nil, false, err
	}
	for _, v := range h {
		if v-v != 0 {
			return h, false, nil
		}
	}
	return h, true, nil
}

// Add copies A (r×in) and B (out×r) into a free slot, with scale s, and
// returns its id, 0 ≤ id < Capacity: the lowest free one. The caller keeps a
// and bm. A and B may be F32, F16 or BF16 (NF4: ErrDType); the Bank keeps
// float32 copies of their exact values. The rank r must be between 1 and
// MaxRank, and may exceed min(in, out); A, B and scale must be finite
// (ErrNonFinite); a full Bank refuses with ErrFull. On the GPU, Add waits
// for the queued work: it reads A and B back to check them.
func (b *Bank) Add(a, bm *Matrix, scale float32) (int, error) {
	const op = "Bank.Add"
	if b == nil {
		return -1, fmt.Errorf("lora: %s: bank is nil: %w", op, ErrNil)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.check(op); err != nil {
		return -1, err
	}
	if err := a.usable(op, "a"); err != nil {
		return -1, err
	}
	if err := bm.usable(op, "b"); err != nil {
		return -1, err
	}
	if err := wantFloat(op, "a", a); err != nil {
		return -1, err
	}
	if err := wantFloat(op, "b", bm); err != nil {
		return -1, err
	}
	out, in := b.w.rows, b.w.cols
	r := a.rows
	if a.cols != in {
		return -1, fmt.Errorf("lora: %s: a is %s, want r×%d for W %s: %w", op, a.shape(), in, b.w.shape(), ErrShape)
	}
	if r < 1 || r > b.cfg.MaxRank {
		return -1, fmt.Errorf("lora: %s: a is %s, rank %d, want 1 ≤ rank ≤ MaxRank = %d: %w",
			op, a.shape(), r, b.cfg.MaxRank, ErrConfig)
	}
	if bm.rows != out || bm.cols != r {
		return -1, fmt.Errorf("lora: %s: b is %s, want %d×%d for W %s and a %s: %w",
			op, bm.shape(), out, r, b.w.shape(), a.shape(), ErrShape)
	}
	if s := float64(scale); math.IsNaN(s) || math.IsInf(s, 0) {
		return -1, fmt.Errorf("lora: %s: scale is %v: %w", op, scale, ErrNonFinite)
	}
	if b.held == len(b.slots) {
		return -1, fmt.Errorf("lora: %s: all %d slots hold an adapter: %w", op, len(b.slots), ErrFull)
	}
	ha, ok, err := hostCopy(a)
	if err != nil {
		return -1, fmt.Errorf("lora: %s: %w", op, err)
	}
	if !ok {
		return -1, fmt.Errorf("lora: %s: a holds NaN or Inf: %w", op, ErrNonFinite)
	}
	hb, ok, err := hostCopy(bm)
	if err != nil {
		return -1, fmt.Errorf("lora: %s: %w", op, err)
	}
	if !ok {
		return -1, fmt.Errorf("lora: %s: b holds NaN or Inf: %w", op, ErrNonFinite)
	}
	id := 0
	for b.slots[id].a != nil {
		id++
	}
	ca, err := newMatrix(op+": A", r, in, ha)
	if err != nil {
		return -1, err
	}
	cb, err := newMatrix(op+": B", out, r, hb)
	if err != nil {
		ca.Free()
		return -1, err
	}
	s := bankSlot{a: ca, b: cb, scale: scale}
	if err := b.backendSet(id, &s, hb); err != nil {
		ca.Free()
		cb.Free()
		return -1, fmt.Errorf("lora: %s: %w", op, err)
	}
	b.slots[id] = s
	b.held++
	return id, nil
}

// Remove frees the adapter with the given id; its slot becomes free and a
// later Add may return the id again. An id that holds no adapter is refused
// with ErrAdapter.
func (b *Bank) Remove(id int) error {
	const op = "Bank.Remove"
	if b == nil {
		return fmt.Errorf("lora: %s: bank is nil: %w", op, ErrNil)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.freed {
		return fmt.Errorf("lora: %s: bank is freed: %w", op, ErrFreed)
	}
	if id < 0 || id >= len(b.slots) {
		return fmt.Errorf("lora: %s: id %d, want 0 ≤ id < Capacity = %d: %w", op, id, len(b.slots), ErrAdapter)
	}
	if b.slots[id].a == nil {
		return fmt.Errorf("lora: %s: slot %d is free: %w", op, id, ErrAdapter)
	}
	if err := b.backendSet(id, nil, nil); err != nil {
		return fmt.Errorf("lora: %s: %w", op, err)
	}
	b.slots[id].a.Free()
	b.slots[id].b.Free()
	b.slots[id] = bankSlot{}
	b.held--
	return nil
}

// Len returns the number of adapters held (0 on a nil or freed Bank).
func (b *Bank) Len() int {
	if b == nil {
		return 0
	}
	b.mu.RLock()
	defer b.mu.RUnlock()
	return b.held
}

// Rank returns the rank of the adapter with the given id, or 0 when the id
// holds no adapter.
func (b *Bank) Rank(id int) int {
	if b == nil {
		return 0
	}
	b.mu.RLock()
	defer b.mu.RUnlock()
	if id < 0 || id >= len(b.slots) || b.slots[id].a == nil {
		return 0
	}
	return b.slots[id].a.rows
}

// Forward computes, for every row i of x (n×in), y[i] = x[i]·Wᵀ +
// s_k·(x[i]·A_kᵀ)·B_kᵀ with k = ids[i], or y[i] = x[i]·Wᵀ when ids[i] == -1,
// into y (n×out). len(ids) must be n; an id below -1, at or beyond Capacity,
// or naming a free slot is refused with ErrAdapter, the error naming the row
// and the id. x and y may be F32, F16 or BF16 (see Bank for the arithmetic);
// y must be distinct from x and W. Nothing is written to y on an error. ids
// is read before Forward returns: the caller may reuse it.
func (b *Bank) Forward(y, x *Matrix, ids []int32) error {
	const op = "Bank.Forward"
	if b == nil {
		return fmt.Errorf("lora: %s: bank is nil: %w", op, ErrNil)
	}
	b.mu.RLock()
	defer b.mu.RUnlock()
	if err := b.check(op); err != nil {
		return err
	}
	if err := checkIO(op, y, x, b.w); err != nil {
		return err
	}
	if len(ids) != x.rows {
		return fmt.Errorf("lora: %s: len(ids) is %d, want n = %d for x %s: %w", op, len(ids), x.rows, x.shape(), ErrShape)
	}
	for i, id := range ids {
		switch {
		case id == -1:
		case id < -1 || int(id) >= len(b.slots):
			return fmt.Errorf("lora: %s: ids[%d] is %d, want -1 or 0 ≤ id < Capacity = %d: %w",
				op, i, id, len(b.slots), ErrAdapter)
		case b.slots[id].a == nil:
			return fmt.Errorf("lora: %s: ids[%d] is %d, a free slot: %w", op, i, id, ErrAdapter)
		}
	}
	y.forgetBound()
	// The backend stages half x and y as its kernels need (bank_cpu.go,
	// bank_device.go), writing y only when the computation succeeded.
	if err := b.forward(y, x, ids); err != nil {
		return fmt.Errorf("lora: %s: %w", op, err)
	}
	return nil
}

// Free frees the adapters the Bank holds, and its backend state; W stays
// the caller's. It is idempotent; every later use of the Bank returns an
// error wrapping ErrFreed.
func (b *Bank) Free() {
	if b == nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.freed {
		return
	}
	b.freed = true
	for i := range b.slots {
		if b.slots[i].a != nil {
			b.slots[i].a.Free()
			b.slots[i].b.Free()
		}
		b.slots[i] = bankSlot{}
	}
	b.held = 0
	b.backendFree()
}

// bankGroups sorts the rows of a batch by adapter, stably (a counting sort
// over the ids present): perm lists the rows with an adapter, grouped, in
// their order within each group; groups gives each group's adapter and its
// range [start, end) of perm. Rows with id -1 are left out.
type bankGroup struct {
	id         int32
	start, end int
}

func bankGroups(ids []int32) (perm []int32, groups []bankGroup) {
	// Map the ids present to dense indices in order of first appearance:
	// a map keeps the cost at O(n) whatever the Capacity.
	index := make(map[int32]int, 16)
	var order []int32
	var counts []int
	for _, id := range ids {
		if id < 0 {
			continue
		}
		g, ok := index[id]
		if !ok {
			g = len(order)
			index[id] = g
			order = append(order, id)
			counts = append(counts, 0)
		}
		counts[g]++
	}
	groups = make([]bankGroup, len(order))
	pos := 0
	for g, id := range order {
		groups[g] = bankGroup{id: id, start: pos, end: pos + counts[g]}
		pos += counts[g]
	}
	perm = make([]int32, pos)
	next := make([]int, len(order))
	for g := range groups {
		next[g] = groups[g].start
	}
	for i, id := range ids {
		if id < 0 {
			continue
		}
		g := index[id]
		perm[next[g]] = int32(i)
		next[g]++
	}
	return perm, groups
}
