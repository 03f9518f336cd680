package main

// The "NF4" table: one layer, in = out = 4096, r = 16, over a W of each
// dtype, f32, bf16 and nf4 (bitsandbytes' 4-bit NormalFloat, made by
// lora.Quantize in blocks of 64), timed in the same rounds so that the
// nf4/bf16 ratio compares like with like:
//
//	forward   Layer.Forward at n = 1, 16, 64 and 256
//	backward  Layer.Backward with dx at n = 16 and 256
//	bank      Bank.Forward (NewBank over the same W, 4 adapters, the rows'
//	          ids mixed) at n = 1, 16 and 256
//
// x and y (dy and dx) are bf16 on the bf16 and nf4 rows, f32 on the f32
// rows; A and B are float32 on every row, as PEFT keeps them. Rows with
// n ≤ 16 rotate through copies of W that together exceed the host's
// last-level cache, as the Forward table does. An operation the library
// refuses (a NewBank that does not take the dtype of W, say) prints the
// error's sentinel in place of the time.
//
//	go run ./bench -nf4               only this table
//	go run ./bench -nf4 -quick        its Forward at n = 1, bf16 and nf4
//	go run ./bench -nf4 -peer torch   with PyTorch computing each row as PEFT
//	                                  does over bitsandbytes' default backend

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"

	"github.com/golora/lora"
	"github.com/golora/lora/internal/perf"
)

// The dtype of the NF4 rows, as the dtype column and the JSON spell it.
const dtNF4 = "nf4"

// The operations of the NF4 table.
const (
	opForward  = "forward"
	opBackward = "backward"
	opBank     = "bank"
)

// nf4Config is the NF4 table's layer and the rows it measures.
type nf4Config struct {
	In, R, Block int
	Forward      []int // n of the Forward rows
	Backward     []int // n of the Backward rows (with dx)
	Bank         []int // n of the Bank rows
	Adapters     int   // of the Bank
	// DTypes are the dtypes of W, the rows of every step in this order;
	// nil means f32, bf16 and nf4.
	DTypes []string
}

// defaultNF4 is the full table; quickNF4 its one Forward row at n = 1.
func defaultNF4() *nf4Config {
	return &nf4Config{In: 4096, R: 16, Block: 64, Forward: []int{1, 16, 64, 256}, Backward: []int{16, 256},
		Bank: []int{1, 16, 256}, Adapters: 4}
}

// quickNF4 is its Forward at n = 1 for bf16 and nf4: the nf4 row and the
// ratio to bf16, without the f32 W's copies to fill.
func quickNF4() *nf4Config {
	return &nf4Config{In: 4096, R: 16, Block: 64, Forward: []int{1}, Adapters: 4, DTypes: []string{dtBF16, dtNF4}}
}

// nf4Step is one set of rows measured in the same rounds: an operation at
// one n, for each dtype of W.
type nf4Step struct {
	Op string
	N  int
}

func (c *nf4Config) steps() []nf4Step {
	var s []nf4Step
	for _, op := range []struct {
		name string
		ns   []int
	}{{opForward, c.Forward}, {opBackward, c.Backward}, {opBank, c.Bank}} {
		for _, n := range op.ns {
			s = append(s, nf4Step{op.name, n})
		}
	}
	return s
}

// nf4DTypes are the dtypes of W of the full table, in the order of its
// rows.
var nf4DTypes = []string{dtF32, dtBF16, dtNF4}

func (c *nf4Config) dtypes() []string {
	if len(c.DTypes) == 0 {
		return nf4DTypes
	}
	return c.DTypes
}

// NF4Row is one line of the NF4 table.
type NF4Row struct {
	Op    string `json:"op"`
	N     int    `json:"n"`
	In    int    `json:"in"`
	Out   int    `json:"out"`
	R     int    `json:"r"`
	DType string `json:"dtype"` // of W; x and y are bf16 on the bf16 and nf4 rows
	Block int    `json:"block_size,omitempty"`
	// W's bytes per element as stored (nf4: 0.5 + 4/Block), and the memory
	// its Matrix was measured to take (the Go heap's growth on the CPU).
	BytesPerElem float64 `json:"w_bytes_per_element"`
	Memory       int64   `json:"w_memory_bytes"`
	Copies       int     `json:"w_copies"`
	Time         Stat    `json:"time"`
	GBs          float64 `json:"w_gbs,omitempty"` // W's bytes ÷ the median time
	// An nf4 row: its time ÷ the bf16 row's of the same step, timed in the
	// same rounds.
	OverBF16 float64 `json:"nf4_over_bf16,omitempty"`
	Peer     float64 `json:"peer_s,omitempty"`
	OverPeer float64 `json:"over_peer,omitempty"`
	// The error the library returned instead of a time, and its sentinel.
	Err      string `json:"error,omitempty"`
	Sentinel string `json:"sentinel,omitempty"`
}

// bytesPerElem returns the bytes an element of W takes as stored: 4, 2, or
// for nf4 half a byte of code and a float32 absmax per block.
func bytesPerElem(dt string, block int) float64 {
	switch dt {
	case dtBF16:
		return 2
	case dtNF4:
		return 0.5 + 4/float64(block)
	}
	return 4
}

// sentinels are lora's sentinel errors by name, for a row that shows the
// error the library returned in place of a time.
var sentinels = []struct {
	name string
	err  error
}{
	{"ErrDType", lora.ErrDType}, {"ErrShape", lora.ErrShape}, {"ErrConfig", lora.ErrConfig},
	{"ErrNil", lora.ErrNil}, {"ErrFreed", lora.ErrFreed}, {"ErrMerged", lora.ErrMerged},
	{"ErrNotMerged", lora.ErrNotMerged}, {"ErrNonFinite", lora.ErrNonFinite}, {"ErrAlias", lora.ErrAlias},
	{"ErrDevice", lora.ErrDevice}, {"ErrMemory", lora.ErrMemory}, {"ErrFull", lora.ErrFull},
	{"ErrAdapter", lora.ErrAdapter},
}

// sentinel returns the name of the lora sentinel err wraps, or "error".
func sentinel(err error) string {
	for _, s := range sentinels {
		if errors.Is(err, s.err) {
			return s.name
		}
	}
	return "error"
}

// nf4Source is the table's W: its float32 values, and those quantized by
// lora.Quantize (codes, absmax, and the values the NF4 Matrix reads back).
type nf4Source struct {
	cfg    *nf4Config
	values []float32 // of the f32 and bf16 W
	codes  []byte
	absmax []float32
	read   []float32 // Read of the NF4 W
}

// newNF4Source draws W (uniform in ±0.03, as the Forward table's) and
// quantizes it.
func newNF4Source(c *nf4Config) (*nf4Source, error) {
	rng := rand.New(rand.NewPCG(uint64(c.In), 4))
	src := &nf4Source{cfg: c, values: make([]float32, c.In*c.In)}
	for i := range src.values {
		src.values[i] = (2*rng.Float32() - 1) * 0.03
	}
	w, err := lora.NewMatrixFrom(c.In, c.In, src.values)
	if err != nil {
		return nil, err
	}
	defer w.Free()
	q, err := lora.Quantize(lora.NF4, w, c.Block)
	if err != nil {
		return nil, err
	}
	defer q.Free()
	n := c.In * c.In
	src.codes, src.absmax = make([]byte, (n+1)/2), make([]float32, (n+c.Block-1)/c.Block)
	if err := q.ReadQuantized(src.codes, src.absmax); err != nil {
		return nil, err
	}
	if src.read, err = q.ReadAll(); err != nil {
		return nil, err
	}
	return src, nil
}

// newW returns a new W of dtype dt holding the source's values (for nf4,
// its codes and absmax).
func (s *nf4Source) newW(dt string) (*lora.Matrix, error) {
	c := s.cfg
	if dt == dtNF4 {
		return lora.NewQuantizedFrom(lora.NF4, c.In, c.In, c.Block, s.codes, s.absmax)
	}
	m, err := lora.NewMatrixOf(actDType(dt), c.In, c.In)
	if err == nil {
		if err = m.Write(s.values); err != nil {
			m.Free()
			m = nil
		}
	}
	return m, err
}

// actDType is the dtype of x, y, dy and dx on a row whose W is dt.
func actDType(dt string) lora.DType {
	if dt == dtF32 {
		return lora.F32
	}
	return lora.BF16
}

// memoryOf returns the memory a Matrix that mk makes takes: on the CPU,
// how much the Go heap grows while such matrices are live (after a
// collection either side), over as many as hold 8 MiB as stored, so that
// the heap's other movements weigh little; on a GPU, the bytes of its
// stored state.
func memoryOf(mk func() (*lora.Matrix, error), stored int64) (int64, error) {
	if lora.Backend() != "cpu" {
		m, err := mk()
		m.Free()
		return stored, err
	}
	k := max(1, int((8<<20+stored-1)/stored))
	ms := make([]*lora.Matrix, 0, k)
	defer func() {
		for _, m := range ms {
			m.Free()
		}
	}()
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for range k {
		m, err := mk()
		if err != nil {
			return 0, err
		}
		ms = append(ms, m)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	return (int64(after.HeapAlloc) - int64(before.HeapAlloc)) / int64(k), nil
}

// wSet is every layer of one dtype of W that the table times: copies of W,
// a Layer and (made on first use) a Bank over each, and the batches.
type wSet struct {
	src    *nf4Source
	dt     string
	memory int64
	ws     []*lora.Matrix
	layers []*lora.Layer
	banks  []*lora.Bank
	next   int
}

// rotation returns how many copies of a W of bytes a row at n rotates
// through: enough to exceed perf.RotateBytes at n ≤ 16, one otherwise.
func rotation(n int, bytes float64) int {
	if n > 16 {
		return 1
	}
	return max(1, min(256, int(math.Ceil(float64(perf.RotateBytes())/bytes))))
}

// newWSet makes the set of dtype dt with copies copies of W, each with a
// layer of its own (random A and B, scale 2), and measures one W's memory.
func newWSet(src *nf4Source, dt string, copies int) (*wSet, error) {
	c := src.cfg
	s := &wSet{src: src, dt: dt}
	stored := int64(4 * c.In * c.In)
	switch dt {
	case dtBF16:
		stored /= 2
	case dtNF4:
		stored = int64(len(src.codes)) + 4*int64(len(src.absmax))
	}
	var err error
	if s.memory, err = memoryOf(func() (*lora.Matrix, error) { return src.newW(dt) }, stored); err != nil {
		return nil, err
	}
	rng := rand.New(rand.NewPCG(uint64(c.R), 5))
	for range copies {
		w, err := src.newW(dt)
		if err != nil {
			s.free()
			return nil, err
		}
		s.ws = append(s.ws, w)
		a, b, err := adapter(rng, c.In, c.R)
		if err != nil {
			s.free()
			return nil, err
		}
		l, err := lora.NewLayerFrom(w, a, b, 2)
		if err != nil {
			a.Free()
			b.Free()
			s.free()
			return nil, err
		}
		s.layers = append(s.layers, l)
	}
	return s, nil
}

// adapter returns a random A (r×in, ±1/√in as PEFT draws it) and B (in×r,
// nonzero, as after training).
func adapter(rng *rand.Rand, in, r int) (a, b *lora.Matrix, err error) {
	fill := func(k int, scale float32) []float32 {
		d := make([]float32, k)
		for i := range d {
			d[i] = (2*rng.Float32() - 1) * scale
		}
		return d
	}
	if a, err = lora.NewMatrixFrom(r, in, fill(r*in, float32(1/math.Sqrt(float64(in))))); err != nil {
		return nil, nil, err
	}
	if b, err = lora.NewMatrixFrom(in, r, fill(in*r, 0.03)); err != nil {
		a.Free()
		return nil, nil, err
	}
	return a, b, nil
}

// bank returns the Bank over the i-th W, making it (with the config's
// adapters) on first use.
func (s *wSet) bank(i int) (*lora.Bank, error) {
	for len(s.banks) <= i {
		s.banks = append(s.banks, nil)
	}
	if s.banks[i] != nil {
		return s.banks[i], nil
	}
	c := s.src.cfg
	bk, err := lora.NewBank(s.ws[i], lora.BankConfig{MaxRank: c.R, Capacity: c.Adapters})
	if err != nil {
		return nil, err
	}
	rng := rand.New(rand.NewPCG(uint64(i), 6))
	for range c.Adapters {
		a, b, err := adapter(rng, c.In, c.R)
		if err != nil {
			bk.Free()
			return nil, err
		}
		_, err = bk.Add(a, b, 2)
		a.Free()
		b.Free()
		if err != nil {
			bk.Free()
			return nil, err
		}
	}
	s.banks[i] = bk
	return bk, nil
}

func (s *wSet) free() {
	if s == nil {
		return
	}
	for _, b := range s.banks {
		b.Free()
	}
	for _, l := range s.layers {
		l.Free()
	}
	for _, w := range s.ws {
		w.Free()
	}
	s.banks, s.layers, s.ws = nil, nil, nil
}

// nf4Bench is the NF4 table under way: the source W and a set per dtype.
type nf4Bench struct {
	cfg  *nf4Config
	src  *nf4Source
	sets map[string]*wSet
}

// newNF4Bench makes every dtype's copies of src's W, as many as the
// table's rows at the smallest n rotate through.
func newNF4Bench(src *nf4Source) (*nf4Bench, error) {
	c := src.cfg
	nb := &nf4Bench{cfg: c, src: src, sets: map[string]*wSet{}}
	nMin := math.MaxInt
	for _, st := range c.steps() {
		nMin = min(nMin, st.N)
	}
	for _, dt := range c.dtypes() {
		s, err := newWSet(src, dt, rotation(nMin, bytesPerElem(dt, c.Block)*float64(c.In*c.In)))
		if err != nil {
			nb.free()
			return nil, err
		}
		nb.sets[dt] = s
	}
	return nb, nil
}

func (nb *nf4Bench) free() {
	for _, s := range nb.sets {
		s.free()
	}
}

// nf4IDs returns the Bank rows' ids at n: the adapters mixed in random
// order, every one present when n allows.
func nf4IDs(n, adapters int) []int32 {
	return bankIDs(rand.New(rand.NewPCG(uint64(n), 7)), n, min(n, adapters), "random")
}

// nf4Op prepares the operation of one row: the batch (x, y, and for
// Backward dy, dx, dA, dB) in the row's dtypes, and a call that takes the
// next copy of W in turn. It returns the number of copies used, a function
// freeing the batch, or the library's error, with nothing left to free.
func (nb *nf4Bench) nf4Op(st nf4Step, dt string) (op, int, func(), error) {
	c, s := nb.cfg, nb.sets[dt]
	k := min(len(s.ws), rotation(st.N, bytesPerElem(dt, c.Block)*float64(c.In*c.In)))
	var mats []*lora.Matrix
	free := func() {
		for _, m := range mats {
			m.Free()
		}
	}
	rng := rand.New(rand.NewPCG(uint64(st.N), 8))
	var mkErr error
	mk := func(dt lora.DType, rows, cols int, random bool) *lora.Matrix {
		if mkErr != nil {
			return nil
		}
		m, err := lora.NewMatrixOf(dt, rows, cols)
		if err == nil && random {
			d := make([]float32, rows*cols)
			for i := range d {
				d[i] = 2*rng.Float32() - 1
			}
			if err = m.Write(d); err != nil {
				m.Free()
			}
		}
		if err != nil {
			mkErr = err
			return nil
		}
		mats = append(mats, m)
		return m
	}
	act := actDType(dt)
	x, y := mk(act, st.N, c.In, true), mk(act, st.N, c.In, false)
	turn := func() int {
		i := s.next % k
		s.next++
		return i
	}
	var run func() error
	switch st.Op {
	case opForward:
		run = func() error { return s.layers[turn()].Forward(y, x) }
	case opBackward:
		dy, dx := mk(act, st.N, c.In, true), mk(act, st.N, c.In, false)
		da, db := mk(lora.F32, c.R, c.In, false), mk(lora.F32, c.In, c.R, false)
		run = func() error { return s.layers[turn()].Backward(dx, da, db, dy, x) }
	case opBank:
		for i := range k {
			if _, err := s.bank(i); err != nil {
				free()
				return op{}, k, nil, err
			}
		}
		ids := nf4IDs(st.N, c.Adapters)
		run = func() error { return s.banks[turn()].Forward(y, x, ids) }
	default:
		panic("nf4Op: unknown operation " + st.Op)
	}
	if mkErr != nil {
		free()
		return op{}, k, nil, mkErr
	}
	// One call first: an operation the library refuses shows its error.
	if err := run(); err != nil {
		free()
		return op{}, k, nil, err
	}
	return op{fmt.Sprintf("%s n=%d %s", st.Op, st.N, dt), run}, k, free, nil
}

// rows measures one step, every dtype of W in the same rounds.
func (nb *nf4Bench) rows(cfg config, st nf4Step) ([]NF4Row, error) {
	c := nb.cfg
	dts := c.dtypes()
	rows := make([]NF4Row, len(dts))
	var ops []op
	var at []int // the row of each op
	for i, dt := range dts {
		r := &rows[i]
		*r = NF4Row{Op: st.Op, N: st.N, In: c.In, Out: c.In, R: c.R, DType: dt,
			BytesPerElem: bytesPerElem(dt, c.Block), Memory: nb.sets[dt].memory}
		if dt == dtNF4 {
			r.Block = c.Block
		}
		o, k, free, err := nb.nf4Op(st, dt)
		r.Copies = k
		if err != nil {
			r.Err, r.Sentinel = err.Error(), sentinel(err)
			continue
		}
		defer free()
		ops = append(ops, o)
		at = append(at, i)
	}
	if len(ops) > 0 {
		stats, err := measure(ops, cfg.minTime, cfg.minReps, cfg.maxReps)
		if err != nil {
			return nil, err
		}
		for j, i := range at {
			r := &rows[i]
			r.Time = stats[j]
			r.GBs = r.BytesPerElem * float64(c.In*c.In) / r.Time.Median / 1e9
		}
	}
	if b, q := slices.Index(dts, dtBF16), slices.Index(dts, dtNF4); b >= 0 && q >= 0 &&
		rows[b].Time.Median > 0 && rows[q].Time.Median > 0 {
		rows[q].OverBF16 = rows[q].Time.Median / rows[b].Time.Median
	}
	return rows, nil
}

// nf4PeerRow is one row the peer times, and its answer.
type nf4PeerRow struct {
	Op      string  `json:"op"`
	N       int     `json:"n"`
	DType   string  `json:"dtype"`
	IDs     []int32 `json:"ids,omitempty"`
	Seconds float64 `json:"s,omitempty"`
}

// nf4PeerRequest is the "nf4" part of the peer's request: the layer, the
// files holding the quantized W as lora stores it (codes: the packed bytes;
// absmax and values: little-endian float32, values being lora's Read of the
// NF4 W), and the rows.
type nf4PeerRequest struct {
	In     int          `json:"in"`
	Out    int          `json:"out"`
	R      int          `json:"r"`
	Block  int          `json:"block"`
	Codes  string       `json:"codes"`
	Absmax string       `json:"absmax"`
	Values string       `json:"values"`
	Rows   []nf4PeerRow `json:"rows"`
}

// nf4PeerRows returns the rows the peer times: every row of the table.
func nf4PeerRows(c *nf4Config) []nf4PeerRow {
	var rows []nf4PeerRow
	for _, st := range c.steps() {
		for _, dt := range c.dtypes() {
			r := nf4PeerRow{Op: st.Op, N: st.N, DType: dt}
			if st.Op == opBank {
				r.IDs = nf4IDs(st.N, c.Adapters)
			}
			rows = append(rows, r)
		}
	}
	return rows
}

// nf4PeerTimes are the peer's seconds per call by row.
type nf4PeerTimes map[nf4Step]map[string]float64

// nf4Peer hands the quantized W to the peer and has it time every row of
// the table. The peer checks, before timing, that its dequantization of W
// equals lora's Read bit for bit, and fails otherwise.
func nf4Peer(cfg config, src *nf4Source) (nf4PeerTimes, string, error) {
	c := src.cfg
	dir, err := os.MkdirTemp("", "lora-bench-nf4-")
	if err != nil {
		return nil, "", err
	}
	defer os.RemoveAll(dir)
	req := nf4PeerRequest{In: c.In, Out: c.In, R: c.R, Block: c.Block,
		Codes: filepath.Join(dir, "codes"), Absmax: filepath.Join(dir, "absmax"), Values: filepath.Join(dir, "values"),
		Rows: nf4PeerRows(c)}
	if err := os.WriteFile(req.Codes, src.codes, 0o600); err != nil {
		return nil, "", err
	}
	for _, f := range []struct {
		path string
		v    []float32
	}{{req.Absmax, src.absmax}, {req.Values, src.read}} {
		b := make([]byte, 4*len(f.v))
		for i, v := range f.v {
			binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(v))
		}
		if err := os.WriteFile(f.path, b, 0o600); err != nil {
			return nil, "", err
		}
	}
	var ans struct {
		Torch, Device, BLAS string
		Threads             int
		NF4                 struct {
			Check string       `json:"check"`
			Rows  []nf4PeerRow `json:"rows"`
		} `json:"nf4"`
	}
	if err := callPeer(cfg, map[string]any{"nf4": req}, &ans); err != nil {
		return nil, "", err
	}
	if ans.NF4.Check == "" {
		return nil, "", errors.New("peer torch: no check of the NF4 W in its answer (does bench/peer_torch.py know \"nf4\"?)")
	}
	times := nf4PeerTimes{}
	for _, r := range ans.NF4.Rows {
		st := nf4Step{r.Op, r.N}
		if times[st] == nil {
			times[st] = map[string]float64{}
		}
		times[st][r.DType] = r.Seconds
	}
	for _, r := range req.Rows {
		if !(times[nf4Step{r.Op, r.N}][r.DType] > 0) {
			return nil, "", fmt.Errorf("peer torch: no time for the NF4 table's %s n=%d %s in its answer", r.Op, r.N, r.DType)
		}
	}
	desc := fmt.Sprintf("torch %s on %s, %d threads, BLAS %s; NF4 W %s", ans.Torch, ans.Device, ans.Threads, ans.BLAS, ans.NF4.Check)
	return times, desc, nil
}

// fill sets the peer's columns of rows that have a time.
func (pt nf4PeerTimes) fill(rows []NF4Row) {
	for i := range rows {
		r := &rows[i]
		if t := pt[nf4Step{r.Op, r.N}][r.DType]; t > 0 {
			r.Peer = t
			if r.Time.Median > 0 {
				r.OverPeer = r.Time.Median / t
			}
		}
	}
}

// nf4 is the cost model's seconds for a step of the NF4 table: each
// dtype's operation, timed as measure does.
func (m *costModel) nf4(c *nf4Config, st nf4Step) float64 {
	s := perf.Shape{N: st.N, In: c.In, Out: c.In, R: c.R}
	flop := s.BaseFLOP()
	if st.Op == opBackward {
		flop = s.BackwardFLOP(true)
	}
	t := 0.0
	for _, dt := range c.dtypes() {
		t += m.op(m.call(flop, bytesPerElem(dt, c.Block)*float64(c.In*c.In)))
	}
	return t
}

// nf4Peer is the cost model's seconds for the peer's NF4 table: starting
// Python, then each row, the nf4 ones dequantizing W on every call.
func (m *costModel) nf4Peer() float64 {
	c := m.cfg.nf4
	t := 3.0
	for _, st := range c.steps() {
		t += m.nf4(c, st) + m.op(float64(c.In*c.In)*8/m.bw)
	}
	return t
}

// nf4Setup is the cost model's seconds for quantizing W and filling every
// dtype's copies.
func (m *costModel) nf4Setup(c *nf4Config) float64 {
	w := float64(c.In * c.In)
	t := 4 * w / m.fill
	for _, dt := range c.dtypes() {
		b := bytesPerElem(dt, c.Block) * w
		t += float64(rotation(1, b)) * (b + 8*float64(c.R*c.In)) / m.fill
	}
	return t
}
