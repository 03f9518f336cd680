package main

import (
	"bufio"
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"math"
	"math/bits"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/golora/lora"
	"github.com/golora/lora/internal/sysmem"
	"github.com/golora/lora/internal/tmpfile"
	"github.com/golora/lora/peft"
)

type mergeOptions struct {
	base, adapter, out string
	scale              float64
	dtype              string
	allowMissing       bool
	force              bool
}

const mergeSynopsis = "usage: lora merge -base DIR_OR_FILE -adapter DIR -out DIR [-scale 1.0] [-dtype keep|f32|f16|bf16] [-allow-missing] [-force]\n"

// mergeHelp is the description that "lora merge -h" and "lora help merge"
// print between the synopsis and the flags.
var mergeHelp = `
merge folds the PEFT LoRA adapter in -adapter into the safetensors model
-base (model.safetensors, or model.safetensors.index.json and its shards) and
writes a model of the same layout, file names and shard split to -out:

  - every adapted weight W becomes W + scale·s·ΔW, computed in float32 and
    rounded once to the output dtype (an f16 or bf16 weight kept in its
    dtype merges through a W of that dtype, with the same result). ΔW is
    added transposed to a weight stored [in, out]: when the adapter says
    fan_in_fan_out and, as PEFT does, always for the Conv1D layers (c_attn,
    c_proj, c_fc, q_attn) of a model whose config.json (beside the model's
    files) says model_type
    ` + conv1DFamilyList() + `; the summary says so.
  - only the modules the adapter's configuration selects (target_modules,
    exclude_modules, layers_to_transform) are merged; other LoRA pairs in the
    adapter file are listed as a warning and left out, as PEFT leaves them.
  - every tensor the adapter saved whole (modules_to_save) replaces the base
    tensor of the same name; every other tensor is copied byte for byte, or
    converted with -dtype.

Side files: when -base is a directory, its files named *.json (but for the
index, which is rewritten), *.txt, *.model, *.jinja and *.tiktoken, such as
config.json, generation_config.json and the tokenizer, are copied to -out;
hidden files and files of other names are not. When -base is a file, no side
file is copied. Symbolic links, as in a Hugging Face cache snapshot, are
followed for every input: -out gets regular files.

Output: -out must not exist or be an empty directory; -force replaces an
existing one. Everything is written into a temporary directory
.NAME.lora-merge-tmp-* beside -out, which becomes -out by one rename when it
is complete (with -force, the old directory is removed only after that). An
interrupted merge leaves only that temporary directory, which the next merge
into the same -out removes.

Refusals, with nothing written to -out: a module whose base weight is missing
(unless -allow-missing, which skips it, and always when no module finds its
base weight) or has another shape; an output tensor that would hold NaN or
±Inf where the base tensor held a finite value, from an update or a -scale
that overflows, or from the conversion to -dtype (f16 holds at most 65504).

Memory: tensors are read, merged, converted and written in blocks of at most
` + fmt.Sprint(mergeBlockElems>>20) + ` Mi elements, so a tensor larger than the memory merges: the merge needs
at most about ` + fmt.Sprint(peakMiB) + ` MiB plus twice the adapter's weights as float32
(and, in the cuda build, the CUDA driver's own), whatever the size of the
model and of its largest tensor. An f16 or bf16 weight kept in its dtype
merges in its dtype, with no float32 copy (each element still computed in
float32 and rounded once): a model whose merged weights are all f16 or bf16
needs at most about ` + fmt.Sprint(peakHalfMiB) + ` MiB plus the adapter.

Flags:
`

// newMergeFlags returns the flag set of merge, storing into o.
func newMergeFlags(o *mergeOptions, output io.Writer) *flag.FlagSet {
	fl := flag.NewFlagSet("lora merge", flag.ContinueOnError)
	fl.SetOutput(output)
	fl.StringVar(&o.base, "base", "", "base model: a `DIR_OR_FILE` (model.safetensors, or model.safetensors.index.json and shards)")
	fl.StringVar(&o.adapter, "adapter", "", "PEFT adapter `DIR` (adapter_config.json, adapter_model.safetensors)")
	fl.StringVar(&o.out, "out", "", "output `DIR`: new or empty (see -force); its parents are created if needed")
	fl.Float64Var(&o.scale, "scale", 1, "factor on every module's scale: W + scale·s·ΔW")
	fl.StringVar(&o.dtype, "dtype", "keep", "dtype of floating-point output tensors: keep, f32, f16 or bf16")
	fl.BoolVar(&o.allowMissing, "allow-missing", false, "skip adapter modules and tensors whose base tensor is missing")
	fl.BoolVar(&o.force, "force", false, "replace -out if it is a directory that is not empty")
	fl.Usage = func() { printMergeUsage(output) }
	return fl
}

// printMergeUsage prints merge's full usage to w.
func printMergeUsage(w io.Writer) {
	var o mergeOptions
	fl := newMergeFlags(&o, w)
	fmt.Fprint(w, mergeSynopsis, mergeHelp)
	fl.PrintDefaults()
}

func runMerge(args []string, stdout, stderr io.Writer) error {
	var o mergeOptions
	fl := newMergeFlags(&o, stderr)
	fl.Usage = func() {} // errors are reported with the synopsis below
	if err := fl.Parse(args); err != nil {
		if err == flag.ErrHelp {
			printMergeUsage(stderr)
			return err
		}
		return usagef(mergeSynopsis, "merge: %v", err)
	}
	if fl.NArg() > 0 {
		return usagef(mergeSynopsis, "merge: unexpected argument %q", fl.Arg(0))
	}
	if o.base == "" || o.adapter == "" || o.out == "" {
		return usagef(mergeSynopsis, "merge: -base, -adapter and -out are required")
	}
	if math.IsNaN(o.scale) || math.IsInf(o.scale, 0) {
		return usagef(mergeSynopsis, "merge: -scale %v is not finite", o.scale)
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
	module *peft.Module    // actMerge, with the final scale and layout
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
			return usagef(mergeSynopsis, "-dtype %q: want keep, f32, f16 or bf16", o.dtype)
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
	sides, err := sideFiles(m, o.base, stderr)
	if err != nil {
		return err
	}
	if err := checkOutput(o, m, sides); err != nil {
		return err
	}

	// Everything is checked: write into a temporary directory.
	od, err := prepareOutput(o.out, o.force, stderr)
	if err != nil {
		return err
	}
	defer od.abandon() // unless committed
	beforeWriting()
	var total int64
	tensors := 0
	for _, p := range plans {
		total += p.size
		tensors += len(p.jobs)
	}
	files := 0
	prog := newProgress(stderr, tensors, total)
	w := newWriter()
	defer w.close()
	for _, p := range plans {
		if err := w.writeShard(od.tmp, p, prog); err != nil {
			return err
		}
		files++
	}
	if m.index != nil {
		data, err := rewriteIndex(m.index, plans)
		if err != nil {
			return err
		}
		if err := tmpfile.Create(od.tmp, m.indexFile, func(f *os.File) error {
			_, err := f.Write(data)
			return err
		}); err != nil {
			return err
		}
		files++
	}
	for _, s := range sides {
		if err := tmpfile.Create(od.tmp, filepath.Base(s), func(f *os.File) error {
			src, err := os.Open(s)
			if err != nil {
				return err
			}
			defer src.Close()
			_, err = io.Copy(f, src)
			return err
		}); err != nil {
			return err
		}
		files++
	}
	prog.finish()
	if err := od.commit(); err != nil {
		return err
	}
	secs := time.Since(start).Seconds()
	fmt.Fprintf(stdout, "merged %s, replaced %s, converted %d, copied %d",
		plural(stats.merged, "module"), plural(stats.replaced, "tensor"), stats.converted, stats.copied)
	if stats.skipped > 0 {
		fmt.Fprintf(stdout, ", skipped %s without a base tensor", plural(stats.skipped, "adapter entry"))
	}
	if stats.ignored > 0 {
		fmt.Fprintf(stdout, ", ignored %s that the configuration does not select", plural(stats.ignored, "module"))
	}
	fmt.Fprintln(stdout)
	if stats.conv1D > 0 {
		fmt.Fprintf(stdout, "fan_in_fan_out: %s merged as Conv1D layers stored [in, out], as config.json's model_type %q says\n",
			plural(stats.conv1D, "module"), stats.modelType)
	}
	if stats.layoutOverridden > 0 {
		fmt.Fprintf(stdout, "fan_in_fan_out: the adapter's flag disagrees with model_type %q for %s: followed the model, as PEFT does\n",
			stats.modelType, plural(stats.layoutOverridden, "module"))
	}
	fmt.Fprintf(stdout, "wrote %s to %s: %s in %.2f s, %.2f GB/s\n", plural(files, "file"), o.out, formatBytes(total), secs, float64(total)/secs/1e9)
	return nil
}

// plural returns n and noun, with the noun in the plural unless n is 1.
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	if strings.HasSuffix(noun, "y") {
		return fmt.Sprintf("%d %sies", n, strings.TrimSuffix(noun, "y"))
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

// beforeWriting runs once the temporary output directory exists, before the
// first output file is created: a hook for the tests.
var beforeWriting = func() {}

type mergeStats struct {
	merged, replaced, converted, copied, skipped, ignored int
	modelType                                             string // config.json's, when it is a Conv1D family
	conv1D                                                int    // modules merged as Conv1D layers by model_type
	layoutOverridden                                      int    // of which the adapter's fan_in_fan_out disagreed
}

// planMerge decides what becomes of every tensor of the base model and
// checks that the adapter fits it.
func planMerge(m *model, ad *peft.Adapter, o mergeOptions, outDType peft.DType, stderr io.Writer) ([]*shardPlan, mergeStats, error) {
	var st mergeStats
	for _, name := range ad.Ignored {
		fmt.Fprintf(stderr, "lora merge: warning: the adapter file has LoRA weights for %s, which its configuration does not select (target_modules, exclude_modules, layers_to_transform): not merged\n", name)
	}
	st.ignored = len(ad.Ignored)
	family, err := conv1DFamily(m.dir)
	if err != nil {
		return nil, st, err
	}
	if family != "" {
		st.modelType = family
	}
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
		scaled := *mod
		if family != "" && !mod.Embedding {
			conv := isConv1DModule(mod.Name)
			if conv != mod.FanInFanOut {
				fmt.Fprintf(stderr, "lora merge: warning: module %s: the adapter says fan_in_fan_out %v, but in a %s model it is %s: merging it as PEFT does, with fan_in_fan_out %v\n",
					mod.Name, mod.FanInFanOut, family, layerKind(conv), conv)
				st.layoutOverridden++
			}
			scaled.FanInFanOut = conv
			if conv {
				st.conv1D++
			}
		}
		rows, cols := scaled.WeightShape()
		if !ref.info.DType.Float() {
			return nil, st, fmt.Errorf("module %s: base tensor %q is %s, not a floating-point weight", mod.Name, base, ref.info.DType)
		}
		if !slices.Equal(ref.info.Shape, []int{rows, cols}) {
			return nil, st, fmt.Errorf("module %s: base tensor %q has shape %v, but the adapter (A %d×%d, B %d×%d%s) needs [%d %d]",
				mod.Name, base, ref.info.Shape, mod.Rank, mod.In, mod.Out, mod.Rank, layoutNote(&scaled), rows, cols)
		}
		if mod.Rank > min(mod.In, mod.Out) {
			return nil, st, fmt.Errorf("module %s: rank %d is more than min(in, out) = %d", mod.Name, mod.Rank, min(mod.In, mod.Out))
		}
		if !finite(mod.A) || !finite(mod.B) {
			return nil, st, fmt.Errorf("module %s: A or B holds NaN or Inf", mod.Name)
		}
		s := float64(mod.Scale) * o.scale
		if math.IsInf(float64(float32(s)), 0) {
			return nil, st, fmt.Errorf("module %s: scale %v × %v overflows float32", mod.Name, mod.Scale, o.scale)
		}
		scaled.Scale = float32(s)
		if err := sysmem.Check(fmt.Sprintf("merging %q (%d×%d, rank %d)", base, rows, cols, mod.Rank), mergeMemory(rows, cols, mod.Rank, ref.info.DType, cmp.Or(outDType, ref.info.DType))); err != nil {
			return nil, st, err
		}
		modules[base] = &scaled
	}
	if len(ad.Modules) > 0 && len(modules) == 0 {
		return nil, st, fmt.Errorf("none of the adapter's %s found its base weight in %s: is it the adapter's base model?",
			plural(len(ad.Modules), "module"), o.base)
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

func layerKind(conv1D bool) string {
	if conv1D {
		return "a Conv1D layer, stored [in, out]"
	}
	return "an nn.Linear layer, stored [out, in]"
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
// with the weights: *.json but the index, *.txt, *.model, *.jinja and
// *.tiktoken, not hidden, regular files or symbolic links to them. A base
// given as a file has none.
func sideFiles(m *model, base string, stderr io.Writer) ([]string, error) {
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
		if name == m.indexFile || strings.HasPrefix(name, ".") {
			continue
		}
		switch filepath.Ext(name) {
		case ".json", ".txt", ".model", ".jinja", ".tiktoken":
		default:
			continue
		}
		path := filepath.Join(m.dir, name)
		fi, err := os.Stat(path) // follows symbolic links
		if err != nil {
			fmt.Fprintf(stderr, "lora merge: warning: not copying %s: %v\n", path, err)
			continue
		}
		if fi.Mode().IsRegular() {
			out = append(out, path)
		}
	}
	return out, nil
}

// checkOutput refuses an output that would replace an input: -out the base
// model's directory, or a directory holding an input (which -force would
// remove).
func checkOutput(o mergeOptions, m *model, sides []string) error {
	if sameFile(o.out, m.dir) {
		return fmt.Errorf("-out %s is the base model's directory: the input is never overwritten", o.out)
	}
	if fi, err := os.Stat(o.out); err == nil && !fi.IsDir() {
		return fmt.Errorf("-out %s exists and is not a directory", o.out)
	}
	out, err := filepath.Abs(o.out)
	if err != nil {
		return err
	}
	if r, err := filepath.EvalSymlinks(out); err == nil {
		out = r
	}
	inputs := m.inputFiles()
	inputs = append(inputs, sides...)
	inputs = append(inputs, filepath.Join(o.adapter, peft.ConfigFile), filepath.Join(o.adapter, peft.WeightsFile))
	for _, in := range inputs {
		paths := []string{in}
		if r, err := filepath.EvalSymlinks(in); err == nil {
			paths = append(paths, r)
		}
		for _, p := range paths {
			if a, err := filepath.Abs(p); err == nil && within(a, out) {
				return fmt.Errorf("-out %s holds the input %s: the input is never overwritten", o.out, in)
			}
		}
	}
	return nil
}

// within reports whether the clean absolute path p is dir or inside it.
func within(p, dir string) bool {
	rel, err := filepath.Rel(dir, p)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator)) && !filepath.IsAbs(rel)
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

// writer streams tensors from base shards into output files. A producer
// goroutine reads, converts and merges tensors into buffers while the
// calling goroutine writes the previous ones: two buffers (each as large as
// a block of a merge, a copy step or a conversion step) circulate between
// them, so that reading and arithmetic overlap writing with at most two
// blocks in flight, and memory does not grow with the size of a tensor.
type writer struct {
	free    chan *buffer // buffers not in flight
	raw     []byte       // the producer's scratch: bytes read
	vals    []float32    // the producer's scratch: values
	exempt  []int        // the producer's scratch: non-finite elements of the base
	saved   []float32    // the producer's scratch: their values
	saved16 []uint16     // the producer's scratch: their 16-bit patterns
	blocks  blockCache   // the producer's matrices for merges, for reuse
}

// buffer is memory for one chunk of output, kept as []float32 so that its
// bytes are aligned for float32 data.
type buffer struct{ f []float32 }

// floats returns the first n values of b, growing it as needed.
func (b *buffer) floats(n int) []float32 {
	if cap(b.f) < n {
		b.f = make([]float32, n)
	}
	return b.f[:n]
}

// halves returns the first n 16-bit elements of b, growing it as needed:
// the memory of b.bytes(2n).
func (b *buffer) halves(n int) []uint16 {
	f := b.floats((n + 1) / 2)
	if n == 0 {
		return nil
	}
	return unsafe.Slice((*uint16)(unsafe.Pointer(unsafe.SliceData(f))), n)
}

// bytes returns the first n bytes of b, growing it as needed.
func (b *buffer) bytes(n int) []byte {
	words := (n + 3) / 4
	return peft.Float32Bytes(b.floats(words))[:n]
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

func (w *writer) close() { w.blocks.free() }

// Steps of a copy or conversion and blocks of a merge, so that a large
// tensor does not need a buffer of its size, and the data written before a
// flush to disk starts (variables for the tests).
var (
	copyStep        int64 = 8 << 20  // bytes
	convertStep     int64 = 1 << 20  // elements
	mergeBlockElems int64 = 2 << 20  // elements of a block of rows, at least the rank's rows
	flushEvery      int64 = 64 << 20 // bytes
)

// peakMiB is the bound on merge's memory that its usage states, beyond
// twice the adapter's weights as float32 (the adapter as loaded, and the
// copies its modules' layers are built from): TestMergePeakMemory measures
// it. It covers the
// producer's scratch (a block's values, and its bytes in the input dtype,
// up to 8 bytes an element), the two buffers in flight, the cached block
// matrices, and the Go runtime's own.
const peakMiB = 160

// peakHalfMiB is peakMiB for a model whose merged weights are F16 or BF16
// kept in their dtype: they merge through a W of their dtype, with no
// float32 copy, and the blocks take a quarter of the memory.
const peakHalfMiB = 80

// mergeMemory returns the bytes a merge of a rows×cols weight of rank r,
// of dtype in written as out, needs beyond the adapter: the block matrices
// (A' and a block of B' as float32, and a block of W) and two output
// buffers; and for a weight merged in float32, a block's values as float32
// and as bytes of the input (up to F64). An F16 or BF16 weight kept in its
// dtype merges through a W of that dtype, read into and written from the
// output buffers: 6 bytes an element of a block instead of 24.
func mergeMemory(rows, cols, r int, in, out peft.DType) int64 {
	h := blockRows(rows, cols, r)
	blk := int64(h) * int64(cols)
	ab := int64(r) * (int64(cols) + int64(h)) * 4
	if halfMerge(in, out) {
		return blk*(2+2*2) + ab
	}
	return blk*(4+8+2*4+4) + ab
}

// blockRows returns the rows of the blocks in which a rows×cols weight of
// rank r merges: mergeBlockElems elements, at least r rows (lora.Layer
// wants rank ≤ rows) and at most rows.
func blockRows(rows, cols, r int) int {
	h := int(mergeBlockElems / int64(max(cols, 1)))
	return min(max(h, r, 1), rows)
}

func grow[T any](s []T, n int) []T {
	if cap(s) < n {
		return make([]T, n)
	}
	return s[:n]
}

// errStopped ends the producer after the writer failed.
var errStopped = errors.New("stopped")

// writeShard writes the output shard of p into dir.
func (w *writer) writeShard(dir string, p *shardPlan, prog *progress) error {
	return tmpfile.Create(dir, p.sh.name, func(f *os.File) error {
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

// convert converts a tensor to the output dtype in steps of convertStep
// elements, reading it from r (a base tensor) or src (an adapter's).
func (w *writer) convert(r io.ReaderAt, j *job, send func(chunk) error, get func() (*buffer, error)) error {
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
		if _, err := r.ReadAt(w.raw, off); err != nil {
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
		w.exempt = nonFiniteIndices(w.exempt[:0], w.raw, in)
		if i := newNonFinite(enc, out, w.exempt); i >= 0 {
			w.free <- b
			return nonFiniteError(j, done+int64(i), w.vals[i], "the conversion")
		}
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
	jt := *j
	jt.in.DType = t.DType // the adapter's tensor, in its own dtype
	return w.convert(bytes.NewReader(t.Data), &jt, send, get)
}

// merge reads W in blocks of rows, adds the module's update to each with
// package lora, and makes each block a chunk. The rows of ΔW are
// independent: rows i0:i1 of W get s·B[i0:i1]·A, and rows j0:j1 of a weight
// stored [in, out] get s·(Aᵀ)[j0:j1]·Bᵀ.
//
// An F16 or BF16 weight written in its own dtype merges through a
// lora.Matrix of that dtype: its 16-bit patterns go in as they are read and
// come out as they are written, and Merge forms each element in float32 and
// rounds it once to the dtype, so the result is the float32 path's, bit for
// bit, with half of its memory. Every other weight is widened to float32,
// merged, and rounded once to the output dtype.
func (w *writer) merge(sec *io.SectionReader, j *job, send func(chunk) error, get func() (*buffer, error)) error {
	rows, cols := j.in.Shape[0], j.in.Shape[1]
	h := blockRows(rows, cols, j.module.Rank)
	dt := lora.F32
	if halfMerge(j.in.DType, j.out.DType) {
		dt = loraDType(j.in.DType)
	}
	bm, err := w.blockMats(dt, h, cols, j.module)
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
			if bm, err = w.blockMats(dt, h, cols, j.module); err != nil {
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

// blockMats returns the block matrices of a merge of mod's weight in
// blocks of h rows of cols, W of dtype dt, with A' (r×cols) written: A, or
// Bᵀ for a weight stored [in, out].
func (w *writer) blockMats(dt lora.DType, h, cols int, mod *peft.Module) (*blockMats, error) {
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
	inD, outD := j.in.DType, j.out.DType
	native := peft.NativeF32()
	// W's rows i0:i0+n, zero rows after them up to h.
	vals := grow(w.vals, h*cols)
	w.vals = vals
	var raw []byte
	if inD == peft.F32 && native {
		raw = peft.Float32Bytes(vals[:n*cols])
	} else {
		w.raw = grow(w.raw, n*cols*inD.Size())
		raw = w.raw
	}
	if _, err := sec.ReadAt(raw, int64(i0)*int64(cols)*int64(inD.Size())); err != nil {
		return err
	}
	w.exempt = nonFiniteIndices(w.exempt[:0], raw, inD)
	if !(inD == peft.F32 && native) {
		if err := peft.DecodeFloats(vals[:n*cols], raw, inD); err != nil {
			return err
		}
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
	bm, berr := w.blockMats(lora.F32, blockRows(rows, cols, j.module.Rank), cols, j.module)
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

// nonFiniteError says that element at of the tensor of j would be NaN or
// ±Inf in the output, v being its value as float32 before the rounding to
// the output dtype, computed by what ("the merge" or "the conversion").
// produce prefixes the tensor's name.
func nonFiniteError(j *job, at int64, v float32, what string) error {
	where := fmt.Sprintf("element %d", at)
	if len(j.in.Shape) == 2 {
		cols := int64(j.in.Shape[1])
		where = fmt.Sprintf("element [%d, %d]", at/cols, at%cols)
	}
	got, why := "+Inf", fmt.Sprintf("gives %v, beyond the range of %s (±%s)", v, j.out.DType, maxFinite(j.out.DType))
	switch {
	case v != v:
		got, why = "NaN", "gives NaN"
	case v < 0:
		got = "-Inf"
	}
	return fmt.Errorf("the %s output would hold %s at %s, where the base tensor is finite: %s there %s",
		j.out.DType, got, where, what, why)
}

// maxFinite returns the largest finite value of the float dtype d.
func maxFinite(d peft.DType) string {
	switch d {
	case peft.F16:
		return "65504"
	case peft.BF16:
		return "3.3895e+38"
	case peft.F64:
		return "1.7977e+308"
	}
	return "3.4028e+38"
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
