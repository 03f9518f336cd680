package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/golora/lora"
	"github.com/golora/lora/internal/tmpfile"
	"github.com/golora/lora/peft"
)

type mergeOptions struct {
	base, adapter, out string
	scale              float64
	dtype              string
	allowMissing       bool
}

func runMerge(args []string, stdout, stderr io.Writer) error {
	fl := flag.NewFlagSet("lora merge", flag.ContinueOnError)
	fl.SetOutput(stderr)
	var o mergeOptions
	fl.StringVar(&o.base, "base", "", "base model: a `DIR_OR_FILE` (model.safetensors, or model.safetensors.index.json and shards)")
	fl.StringVar(&o.adapter, "adapter", "", "PEFT adapter `DIR` (adapter_config.json, adapter_model.safetensors)")
	fl.StringVar(&o.out, "out", "", "output `DIR`, created if needed")
	fl.Float64Var(&o.scale, "scale", 1, "factor on every module's scale: W + scale·s·ΔW")
	fl.StringVar(&o.dtype, "dtype", "keep", "dtype of floating-point output tensors: keep, f32, f16 or bf16")
	fl.BoolVar(&o.allowMissing, "allow-missing", false, "skip adapter modules and tensors whose base tensor is missing")
	fl.Usage = func() {
		fmt.Fprintln(stderr, "usage: lora merge -base DIR_OR_FILE -adapter DIR -out DIR [-scale 1.0] [-dtype keep|f32|f16|bf16] [-allow-missing]")
		fl.PrintDefaults()
	}
	if err := fl.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return err
		}
		return fmt.Errorf("merge: %v: %w", err, errUsage)
	}
	if fl.NArg() > 0 {
		return fmt.Errorf("merge: unexpected argument %q: %w", fl.Arg(0), errUsage)
	}
	if o.base == "" || o.adapter == "" || o.out == "" {
		fl.Usage()
		return fmt.Errorf("merge: -base, -adapter and -out are required: %w", errUsage)
	}
	if math.IsNaN(o.scale) || math.IsInf(o.scale, 0) {
		return fmt.Errorf("merge: -scale %v is not finite: %w", o.scale, errUsage)
	}
	if err := merge(o, stdout, stderr); err != nil {
		return fmt.Errorf("merge: %w", err)
	}
	return nil
}

// What happens to one tensor of the base model.
type action int

const (
	actCopy    action = iota // bytes copied as they are
	actConvert               // converted to another float dtype
	actMerge                 // W + scale·s·ΔW
	actReplace               // replaced by a full tensor of the adapter
)

type job struct {
	act    action
	in     peft.TensorInfo // in the base file
	out    peft.TensorInfo // in the output file; Offset set by EncodeHeader
	module *peft.Module    // actMerge, with the final scale
	full   *peft.Tensor    // actReplace
}

type shardPlan struct {
	sh     *shard
	jobs   []job // in the order of the base file's data
	header []byte
	size   int64 // of the output file
}

// merge plans the whole output, checking everything it can, then writes it.
func merge(o mergeOptions, stdout, stderr io.Writer) error {
	start := time.Now()
	var outDType peft.DType
	if o.dtype != "keep" {
		d, err := peft.ParseDType(o.dtype)
		if err != nil || !d.Float() || d == peft.F64 {
			return fmt.Errorf("-dtype %q: want keep, f32, f16 or bf16: %w", o.dtype, errUsage)
		}
		outDType = d
	}
	ad, err := peft.Load(o.adapter)
	if err != nil {
		return err
	}
	m, err := openModel(o.base)
	if err != nil {
		return err
	}
	defer m.close()

	plans, stats, err := planMerge(m, ad, o, outDType, stderr)
	if err != nil {
		return err
	}
	sides, err := sideFiles(m, o.base)
	if err != nil {
		return err
	}
	if err := checkOutput(o, m, plans, sides); err != nil {
		return err
	}

	// Everything is checked: write.
	var created []string // directories made here, deepest first
	for d := filepath.Clean(o.out); !exists(d); d = filepath.Dir(d) {
		created = append(created, d)
	}
	if err := os.MkdirAll(o.out, 0o755); err != nil {
		return err
	}
	beforeWriting()
	var temps []string // temporary files, renamed to finals on success
	var finals []string
	ok := false
	defer func() {
		if ok {
			return
		}
		for _, t := range temps {
			os.Remove(t)
		}
		for _, d := range created {
			os.Remove(d) // only if empty
		}
	}()
	var total int64
	tensors := 0
	for _, p := range plans {
		total += p.size
		tensors += len(p.jobs)
	}
	prog := newProgress(stderr, tensors, total)
	w := newWriter()
	defer w.mats.free()
	for _, p := range plans {
		tmp, err := w.writeShard(o.out, p, prog)
		if tmp != "" {
			temps = append(temps, tmp)
			finals = append(finals, filepath.Join(o.out, p.sh.name))
		}
		if err != nil {
			return err
		}
	}
	if m.index != nil {
		data, err := rewriteIndex(m.index, plans)
		if err != nil {
			return err
		}
		tmp, err := writeTemp(o.out, m.indexFile, func(f *os.File) error {
			_, err := f.Write(data)
			return err
		})
		if tmp != "" {
			temps = append(temps, tmp)
			finals = append(finals, filepath.Join(o.out, m.indexFile))
		}
		if err != nil {
			return err
		}
	}
	for _, s := range sides {
		tmp, err := writeTemp(o.out, filepath.Base(s), func(f *os.File) error {
			src, err := os.Open(s)
			if err != nil {
				return err
			}
			defer src.Close()
			_, err = io.Copy(f, src)
			return err
		})
		if tmp != "" {
			temps = append(temps, tmp)
			finals = append(finals, filepath.Join(o.out, filepath.Base(s)))
		}
		if err != nil {
			return err
		}
	}
	prog.finish()
	for i, t := range temps {
		if err := os.Rename(t, finals[i]); err != nil {
			for _, t := range temps[i:] {
				os.Remove(t)
			}
			return fmt.Errorf("%w (%d of %d output files renamed into place)", err, i, len(temps))
		}
	}
	ok = true
	secs := time.Since(start).Seconds()
	fmt.Fprintf(stdout, "merged %d modules, replaced %d tensors, converted %d, copied %d", stats.merged, stats.replaced, stats.converted, stats.copied)
	if stats.skipped > 0 {
		fmt.Fprintf(stdout, ", skipped %d adapter entries without a base tensor", stats.skipped)
	}
	fmt.Fprintf(stdout, "\nwrote %d files to %s: %s in %.2f s, %.2f GB/s\n", len(finals), o.out, formatBytes(total), secs, float64(total)/secs/1e9)
	return nil
}

// beforeWriting runs once the output directory exists, before the first
// output file is created: a hook for the tests.
var beforeWriting = func() {}

type mergeStats struct {
	merged, replaced, converted, copied, skipped int
}

// planMerge decides what becomes of every tensor of the base model and
// checks that the adapter fits it.
func planMerge(m *model, ad *peft.Adapter, o mergeOptions, outDType peft.DType, stderr io.Writer) ([]*shardPlan, mergeStats, error) {
	var st mergeStats
	modules := map[string]*peft.Module{} // by base tensor name
	fulls := map[string]*peft.Tensor{}
	claim := func(base, what string) error {
		if modules[base] != nil || fulls[base] != nil {
			return fmt.Errorf("%s and another entry of the adapter both target %q", what, base)
		}
		return nil
	}
	for _, mod := range ad.Modules {
		ref, base, ok := m.find(mod.Weight())
		if !ok {
			if o.allowMissing {
				fmt.Fprintf(stderr, "lora merge: skipping module %s: the base model has no %s\n", mod.Name, mod.Weight())
				st.skipped++
				continue
			}
			return nil, st, fmt.Errorf("module %s: the base model has no tensor %q (use -allow-missing to skip it)", mod.Name, mod.Weight())
		}
		if err := claim(base, "module "+mod.Name); err != nil {
			return nil, st, err
		}
		rows, cols := mod.WeightShape()
		if !ref.info.DType.Float() {
			return nil, st, fmt.Errorf("module %s: base tensor %q is %s, not a floating-point weight", mod.Name, base, ref.info.DType)
		}
		if !slices.Equal(ref.info.Shape, []int{rows, cols}) {
			return nil, st, fmt.Errorf("module %s: base tensor %q has shape %v, but the adapter (A %d×%d, B %d×%d%s) needs [%d %d]",
				mod.Name, base, ref.info.Shape, mod.Rank, mod.In, mod.Out, mod.Rank, layoutNote(mod), rows, cols)
		}
		if mod.Rank > min(mod.In, mod.Out) {
			return nil, st, fmt.Errorf("module %s: rank %d is more than min(in, out) = %d", mod.Name, mod.Rank, min(mod.In, mod.Out))
		}
		if !finite(mod.A) || !finite(mod.B) {
			return nil, st, fmt.Errorf("module %s: A or B holds NaN or Inf", mod.Name)
		}
		scaled := *mod
		s := float64(mod.Scale) * o.scale
		if math.IsInf(float64(float32(s)), 0) {
			return nil, st, fmt.Errorf("module %s: scale %v × %v overflows float32", mod.Name, mod.Scale, o.scale)
		}
		scaled.Scale = float32(s)
		modules[base] = &scaled
	}
	for _, t := range ad.Full {
		ref, base, ok := m.find(t.Name)
		if !ok {
			if o.allowMissing {
				fmt.Fprintf(stderr, "lora merge: skipping full tensor %s: the base model has no tensor of that name\n", t.Name)
				st.skipped++
				continue
			}
			return nil, st, fmt.Errorf("the adapter replaces %q, but the base model has no such tensor (use -allow-missing to skip it)", t.Name)
		}
		if err := claim(base, "full tensor "+t.Name); err != nil {
			return nil, st, err
		}
		if !slices.Equal(ref.info.Shape, t.Shape) {
			return nil, st, fmt.Errorf("the adapter's %q has shape %v, but the base tensor %q has %v", t.Name, t.Shape, base, ref.info.Shape)
		}
		if t.DType != ref.info.DType && (!t.DType.Float() || !ref.info.DType.Float()) {
			return nil, st, fmt.Errorf("the adapter's %q is %s, and the base tensor %q is %s: no conversion between them", t.Name, t.DType, base, ref.info.DType)
		}
		fulls[base] = t
	}

	var plans []*shardPlan
	for _, sh := range m.shards {
		p := &shardPlan{sh: sh}
		infos := slices.Clone(sh.st.Tensors())
		slices.SortStableFunc(infos, func(a, b peft.TensorInfo) int {
			switch {
			case a.Offset < b.Offset:
				return -1
			case a.Offset > b.Offset:
				return 1
			}
			return 0
		})
		outInfos := make([]peft.TensorInfo, len(infos))
		for i, in := range infos {
			j := job{in: in, out: peft.TensorInfo{Name: in.Name, DType: in.DType, Shape: in.Shape}}
			if outDType != "" && in.DType.Float() {
				j.out.DType = outDType
			}
			switch {
			case modules[in.Name] != nil:
				j.act, j.module = actMerge, modules[in.Name]
				st.merged++
			case fulls[in.Name] != nil:
				j.act, j.full = actReplace, fulls[in.Name]
				st.replaced++
			case j.out.DType != in.DType:
				j.act = actConvert
				st.converted++
			default:
				j.act = actCopy
				st.copied++
			}
			p.jobs = append(p.jobs, j)
			outInfos[i] = j.out
		}
		h, err := peft.EncodeHeader(outInfos, sh.st.Metadata())
		if err != nil {
			return nil, st, fmt.Errorf("%s: %w", sh.name, err)
		}
		p.header = h
		p.size = int64(len(h))
		for i := range p.jobs {
			p.jobs[i].out = outInfos[i]
			p.size += outInfos[i].Length
		}
		plans = append(plans, p)
	}
	return plans, st, nil
}

func layoutNote(m *peft.Module) string {
	switch {
	case m.Embedding:
		return ", an embedding stored [in, out]"
	case m.FanInFanOut:
		return ", fan_in_fan_out: stored [in, out]"
	}
	return ""
}

func finite(v []float32) bool {
	for _, x := range v {
		if x-x != 0 {
			return false
		}
	}
	return true
}

// sideFiles lists the small files beside a base model directory that make it
// loadable (config.json, generation_config.json, the tokenizer), to be copied
// with the weights. A base given as a file has none.
func sideFiles(m *model, base string) ([]string, error) {
	fi, err := os.Stat(base)
	if err != nil || !fi.IsDir() {
		return nil, err
	}
	entries, err := os.ReadDir(m.dir)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range entries {
		name := e.Name()
		if !e.Type().IsRegular() || name == m.indexFile || strings.HasPrefix(name, ".") {
			continue
		}
		switch filepath.Ext(name) {
		case ".json", ".txt", ".model", ".jinja", ".tiktoken":
			out = append(out, filepath.Join(m.dir, name))
		}
	}
	return out, nil
}

// checkOutput refuses an output that would overwrite an input.
func checkOutput(o mergeOptions, m *model, plans []*shardPlan, sides []string) error {
	inputs := m.inputFiles()
	inputs = append(inputs, sides...)
	inputs = append(inputs, filepath.Join(o.adapter, peft.ConfigFile), filepath.Join(o.adapter, peft.WeightsFile))
	var outs []string
	for _, p := range plans {
		outs = append(outs, filepath.Join(o.out, p.sh.name))
	}
	if m.indexFile != "" {
		outs = append(outs, filepath.Join(o.out, m.indexFile))
	}
	for _, s := range sides {
		outs = append(outs, filepath.Join(o.out, filepath.Base(s)))
	}
	if sameFile(o.out, m.dir) {
		return fmt.Errorf("-out %s is the base model's directory: the input is never overwritten", o.out)
	}
	for _, out := range outs {
		for _, in := range inputs {
			if sameFile(out, in) {
				return fmt.Errorf("output %s would overwrite the input %s", out, in)
			}
		}
	}
	if fi, err := os.Stat(o.out); err == nil && !fi.IsDir() {
		return fmt.Errorf("-out %s exists and is not a directory", o.out)
	}
	return nil
}

// rewriteIndex returns the index with metadata.total_size set to the bytes
// of tensor data of the output, the rest as it was, written as transformers
// writes it: keys sorted, indented by two spaces.
func rewriteIndex(ix *index, plans []*shardPlan) ([]byte, error) {
	var total int64
	for _, p := range plans {
		for _, j := range p.jobs {
			total += j.out.Length
		}
	}
	meta := maps.Clone(ix.metadata)
	if meta == nil {
		meta = map[string]json.RawMessage{}
	}
	meta["total_size"] = json.RawMessage(fmt.Sprint(total))
	top := maps.Clone(ix.top)
	mb, err := json.Marshal(meta)
	if err != nil {
		return nil, err
	}
	top["metadata"] = mb
	flat, err := json.Marshal(top) // map keys sorted
	if err != nil {
		return nil, err
	}
	var out bytes.Buffer
	if err := json.Indent(&out, flat, "", "  "); err != nil {
		return nil, err
	}
	out.WriteByte('\n')
	return out.Bytes(), nil
}

// writeTemp writes a temporary file beside dir/name with write and returns
// its path; on error it removes it and returns "".
func writeTemp(dir, name string, write func(*os.File) error) (string, error) {
	return tmpfile.Write(dir, name, write)
}

// writer streams tensors from base shards into output files. A producer
// goroutine reads, converts and merges tensors into buffers while the
// calling goroutine writes the previous ones: two buffers (each as large as
// the largest output tensor, or a copy step) circulate between them, so that
// reading and arithmetic overlap writing with at most two tensors in flight.
type writer struct {
	free chan *buffer // buffers not in flight
	raw  []byte       // the producer's scratch: bytes read
	vals []float32    // the producer's scratch: values
	mats matCache     // the producer's weight matrices, for reuse
}

// buffer is memory for one chunk of output, kept as []float32 so that its
// bytes are aligned for float32 data.
type buffer struct{ f []float32 }

// bytes returns the first n bytes of b, growing it as needed.
func (b *buffer) bytes(n int) []byte {
	words := (n + 3) / 4
	if cap(b.f) < words {
		b.f = make([]float32, words)
	}
	return peft.Float32Bytes(b.f[:words])[:n]
}

// chunk is bytes to write, and the buffer to give back once they are.
type chunk struct {
	buf  *buffer // nil for bytes the adapter holds
	data []byte
	last bool // the tensor's last chunk
}

func newWriter() *writer {
	w := &writer{free: make(chan *buffer, 2)}
	w.free <- &buffer{}
	w.free <- &buffer{}
	return w
}

// Steps of a copy or conversion, so that a large tensor does not need a
// buffer of its size, and of the data written before a flush to disk starts
// (variables for the tests).
var (
	copyStep    int64 = 8 << 20  // bytes
	convertStep int64 = 1 << 20  // elements
	flushEvery  int64 = 64 << 20 // bytes
)

func grow[T any](s []T, n int) []T {
	if cap(s) < n {
		return make([]T, n)
	}
	return s[:n]
}

// errStopped ends the producer after the writer failed.
var errStopped = errors.New("stopped")

// writeShard writes the output shard of p to a temporary file in dir and
// returns its name.
func (w *writer) writeShard(dir string, p *shardPlan, prog *progress) (string, error) {
	return writeTemp(dir, p.sh.name, func(f *os.File) error {
		chunks := make(chan chunk, 1)
		stop := make(chan struct{})
		var perr error
		go func() {
			defer close(chunks)
			perr = w.produce(p, chunks, stop)
		}()
		bw := bufio.NewWriterSize(f, 1<<20)
		_, werr := bw.Write(p.header)
		written := int64(len(p.header))
		prog.add(0, written)
		fl := flusher{f: f}
		defer fl.wait()
		for c := range chunks {
			if werr == nil {
				if _, werr = bw.Write(c.data); werr != nil {
					close(stop)
				}
				fl.wrote(int64(len(c.data)))
			}
			if c.buf != nil {
				w.free <- c.buf
			}
			written += int64(len(c.data))
			tensors := 0
			if c.last {
				tensors = 1
			}
			prog.add(tensors, int64(len(c.data)))
		}
		if werr != nil {
			return werr
		}
		if perr != nil {
			return perr
		}
		if err := bw.Flush(); err != nil {
			return err
		}
		if err := fl.wait(); err != nil {
			return err
		}
		if written != p.size {
			return fmt.Errorf("wrote %d bytes, planned %d", written, p.size)
		}
		return nil
	})
}

// flusher has the data written so far go to disk while more is written,
// one Sync at a time, so that the Sync before the rename finds little left
// to do and the disk works while the merge computes.
type flusher struct {
	f     *os.File
	since int64
	busy  atomic.Bool
	wg    sync.WaitGroup
	mu    sync.Mutex
	err   error
}

func (fl *flusher) wrote(n int64) {
	fl.since += n
	if fl.since < flushEvery || fl.busy.Load() {
		return
	}
	fl.since = 0
	fl.busy.Store(true)
	fl.wg.Add(1)
	go func() {
		defer fl.wg.Done()
		if err := fl.f.Sync(); err != nil {
			fl.mu.Lock()
			fl.err = err
			fl.mu.Unlock()
		}
		fl.busy.Store(false)
	}()
}

// wait waits for the Sync in flight and returns the first error.
func (fl *flusher) wait() error {
	fl.wg.Wait()
	fl.mu.Lock()
	defer fl.mu.Unlock()
	return fl.err
}

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
			return fmt.Errorf("%s: %w", j.in.Name, err)
		}
	}
	return nil
}

func (w *writer) produceTensor(st *peft.Safetensors, j *job, send func(chunk) error, get func() (*buffer, error)) error {
	if j.act == actReplace {
		return w.replace(j, send, get)
	}
	sec, err := st.Section(j.in.Name)
	if err != nil {
		return err
	}
	switch j.act {
	case actCopy:
		return w.copyBytes(sec, send, get)
	case actConvert:
		return w.convert(sec, j, send, get)
	case actMerge:
		return w.merge(sec, j, send, get)
	}
	return fmt.Errorf("unknown action %d", j.act)
}

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

func (w *writer) convert(sec *io.SectionReader, j *job, send func(chunk) error, get func() (*buffer, error)) error {
	in, out := j.in.DType, j.out.DType
	elems := j.in.Elements()
	if elems == 0 {
		return send(chunk{last: true})
	}
	off := int64(0)
	for done := int64(0); done < elems; {
		k := int(min(elems-done, convertStep))
		w.raw = grow(w.raw, k*in.Size())
		w.vals = grow(w.vals, k)
		if _, err := sec.ReadAt(w.raw, off); err != nil {
			return err
		}
		if err := peft.DecodeFloats(w.vals, w.raw, in); err != nil {
			return err
		}
		b, err := get()
		if err != nil {
			return err
		}
		enc := b.bytes(k * out.Size())
		peft.EncodeFloats(enc, w.vals, out) // lengths agree
		off += int64(len(w.raw))
		done += int64(k)
		if err := send(chunk{buf: b, data: enc, last: done == elems}); err != nil {
			return err
		}
	}
	return nil
}

func (w *writer) replace(j *job, send func(chunk) error, get func() (*buffer, error)) error {
	t := j.full
	if t.DType == j.out.DType {
		return send(chunk{data: t.Data, last: true})
	}
	v, err := t.Float32s()
	if err != nil {
		return err
	}
	b, err := get()
	if err != nil {
		return err
	}
	enc := b.bytes(len(v) * j.out.DType.Size())
	if err := peft.EncodeFloats(enc, v, j.out.DType); err != nil {
		w.free <- b
		return err
	}
	return send(chunk{buf: b, data: enc, last: true})
}

// merge reads W, adds the module's update with package lora, in float32,
// and makes the result, rounded once to the output dtype, one chunk.
func (w *writer) merge(sec *io.SectionReader, j *job, send func(chunk) error, get func() (*buffer, error)) error {
	rows, cols := j.in.Shape[0], j.in.Shape[1]
	n := rows * cols
	if j.in.DType == peft.F32 && j.out.DType == peft.F32 && peft.NativeF32() {
		// Read into the output buffer, merge there, write it as it is.
		b, err := get()
		if err != nil {
			return err
		}
		data := b.bytes(4 * n)
		v := b.f[:n]
		if _, err := sec.ReadAt(data, 0); err != nil {
			w.free <- b
			return err
		}
		if err := w.mats.merge(v, rows, cols, j.module); err != nil {
			w.free <- b
			return err
		}
		return send(chunk{buf: b, data: data, last: true})
	}
	w.vals = grow(w.vals, n)
	if j.in.DType == peft.F32 && peft.NativeF32() {
		if _, err := sec.ReadAt(peft.Float32Bytes(w.vals), 0); err != nil {
			return err
		}
	} else {
		w.raw = grow(w.raw, n*j.in.DType.Size())
		if _, err := sec.ReadAt(w.raw, 0); err != nil {
			return err
		}
		if err := peft.DecodeFloats(w.vals, w.raw, j.in.DType); err != nil {
			return err
		}
	}
	if err := w.mats.merge(w.vals, rows, cols, j.module); err != nil {
		return err
	}
	b, err := get()
	if err != nil {
		return err
	}
	enc := b.bytes(n * j.out.DType.Size())
	peft.EncodeFloats(enc, w.vals, j.out.DType) // lengths agree
	return send(chunk{buf: b, data: enc, last: true})
}

// matCache keeps the weight matrices of merges for reuse by later weights of
// the same shape, most recently used first, up to maxCachedBytes in all:
// allocating a matrix for every weight costs more than the arithmetic.
type matCache struct {
	entries []cached
	bytes   int64
}

type cached struct {
	rows, cols int
	m          *lora.Matrix
}

const maxCachedBytes = 1 << 30

// merge replaces the rows×cols weight v with v + s·ΔW through a lora.Layer,
// which computes on the backend: the host here, the GPU in the cuda build.
func (c *matCache) merge(v []float32, rows, cols int, mod *peft.Module) error {
	var wm *lora.Matrix
	for i, e := range c.entries {
		if e.rows == rows && e.cols == cols {
			wm = e.m
			c.entries = slices.Delete(c.entries, i, i+1)
			c.bytes -= 4 * int64(rows) * int64(cols)
			break
		}
	}
	var err error
	if wm == nil {
		wm, err = lora.NewMatrixFrom(rows, cols, v)
	} else {
		err = wm.Write(v)
	}
	if err != nil {
		wm.Free()
		return err
	}
	layer, err := mod.NewLayer(wm)
	if err == nil {
		err = layer.Merge()
		layer.Free()
	}
	if err == nil {
		err = wm.Read(v)
	}
	if err != nil {
		wm.Free()
		return err
	}
	c.put(rows, cols, wm)
	return nil
}

func (c *matCache) put(rows, cols int, m *lora.Matrix) {
	size := 4 * int64(rows) * int64(cols)
	if size > maxCachedBytes {
		m.Free()
		return
	}
	c.entries = slices.Insert(c.entries, 0, cached{rows, cols, m})
	c.bytes += size
	for c.bytes > maxCachedBytes {
		last := c.entries[len(c.entries)-1]
		c.entries = c.entries[:len(c.entries)-1]
		c.bytes -= 4 * int64(last.rows) * int64(last.cols)
		last.m.Free()
	}
}

func (c *matCache) free() {
	for _, e := range c.entries {
		e.m.Free()
	}
	c.entries, c.bytes = nil, 0
}

func formatBytes(n int64) string {
	switch {
	case n >= 1e9:
		return fmt.Sprintf("%.2f GB", float64(n)/1e9)
	case n >= 1e6:
		return fmt.Sprintf("%.1f MB", float64(n)/1e6)
	case n >= 1e3:
		return fmt.Sprintf("%.1f kB", float64(n)/1e3)
	}
	return fmt.Sprintf("%d B", n)
}
