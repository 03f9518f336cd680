package main

import (
	"flag"
	"fmt"
	"io"
	"math"
	"time"

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
    ` + conv1DFamilyList() + `; the summary says so. Without a config.json
    that gives a model_type, the adapter's fan_in_fan_out decides: a wrong
    one is a shape error where the weight is not square, and a square
    module with one of those Conv1D names, for which the adapter says
    false, is merged as stored out×in with a warning, in inspect's words.
  - only the modules the adapter's configuration selects (target_modules,
    exclude_modules, layers_to_transform) are merged; other LoRA pairs in the
    adapter file are listed as a warning and left out, as PEFT leaves them.
  - every tensor the adapter saved whole (modules_to_save) replaces the base
    tensor of the same name; every other tensor is copied byte for byte, or
    converted with -dtype.
  - a weight that bitsandbytes stores in 4 bits (NF4: a model saved by
    transformers with load_in_4bit) is written unquantized, in the dtype of
    its quant_state or -dtype: each value exactly NF4[code]·absmax rounded
    once to that dtype, merged in float32 first where the adapter targets
    it. The tensors of its quantization state (.absmax, .quant_map,
    .quant_state.bitsandbytes__nf4, .nested_absmax, .nested_quant_map) are
    left out of the shards and of the index, and config.json is written
    without its quantization_config.

A sharded model's index is written with weight_map as it was, but for the
tensors left out above and metadata.total_size; a tensor that a shard holds
but weight_map does not list is written all the same, listed in the output's
index under its shard, with a warning naming it.

Side files: when -base is a directory, its files named *.json (but for the
index, which is rewritten), *.txt, *.model, *.jinja and *.tiktoken, such as
config.json, generation_config.json and the tokenizer, are copied to -out;
hidden files and files of other names are not. When -base is a file, no side
file is copied. Symbolic links, as in a Hugging Face cache snapshot, are
followed for every input: -out gets regular files.

Output: -out must not exist or be an empty directory; -force replaces an
existing one. An -out that is a symbolic link is refused before any work,
with -force too: the rename below would replace the link, not the
directory it names; give that directory itself. Everything is written into
a temporary directory .NAME.lora-merge-tmp-* beside -out, which becomes
-out by one rename when it is complete (with -force, the old directory is
removed only after that). While it runs, a merge holds a lock (flock) on
the file .NAME.lora-merge-lock beside -out, which holds its pid and start
time: a second merge into the same -out is refused at once, naming them,
and only what a merge that is gone left beside -out is removed. On Windows
and other systems without flock no lock is taken: do not run two merges
into one -out there. SIGINT (Ctrl-C) or SIGTERM stops a merge: it removes
the temporary directory and the lock file, and exits with status 128 plus
the signal's number (130, 143). A merge that is killed otherwise leaves
only those two, which the next merge into the same -out removes.

Refusals, with nothing written to -out: a module whose base weight is missing
(unless -allow-missing, which skips it, and always when no module finds its
base weight) or has another shape; an output tensor that would hold NaN or
±Inf where the base tensor held a finite value, from an update or a -scale
that overflows, or from the conversion to -dtype (f16 holds at most 65504);
a 4-bit weight that is fp4 rather than nf4, whose block size is not a power
of two from 32 to 4096, whose quant_map is not the NF4 table, whose absmax
is not finite or whose tensors disagree with its quant_state in dtype or
length, and beside 4-bit weights a config.json whose quantization_config
says other than bitsandbytes nf4 in 4 bits: the error names the tensor or
the field.

Memory: tensors are read, merged, converted and written in blocks of at most
` + fmt.Sprint(mergeBlockElems>>20) + ` Mi elements, so a tensor larger than the memory merges: the merge needs
at most about ` + fmt.Sprint(peakMiB) + ` MiB plus twice the adapter's weights as float32
(and, in the cuda build, the CUDA driver's own), whatever the size of the
model and of its largest tensor. An f16 or bf16 weight kept in its dtype
merges in its dtype, with no float32 copy (each element still computed in
float32 and rounded once): a model whose merged weights are all f16 or bf16
needs at most about ` + fmt.Sprint(peakHalfMiB) + ` MiB plus the adapter. A 4-bit weight needs 8 bytes
a block more, for its absmax, while it is written (1/8 of a byte an element
in blocks of 64); its codes are read a block of rows at a time.

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

// runMerge runs "lora merge" with the arguments args.
func runMerge(args []string, stdout, stderr io.Writer) error {
	var o mergeOptions
	// The flag package would print an error too: it is reported once, by
	// report, with the synopsis below.
	fl := newMergeFlags(&o, io.Discard)
	fl.Usage = func() {}
	if err := fl.Parse(args); err != nil {
		if err == flag.ErrHelp {
			printMergeUsage(stdout) // as "lora help merge" does
			return nil
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

// merge plans the whole output, checking everything it can, then writes it.
func merge(o mergeOptions, stdout, stderr io.Writer) error {
	start := time.Now()
	if err := checkOutPath(o.out); err != nil {
		return err
	}
	outDType, err := outputDType(o.dtype)
	if err != nil {
		return err
	}
	// The lock on -out, before any work: a merge into the same -out that
	// runs already is refused at once.
	sig := catchSignals(stderr)
	defer sig.stop()
	od, err := sig.lock(o.out)
	if err != nil {
		return err
	}
	defer od.abandon() // unless committed
	ad, err := peft.Load(o.adapter)
	if err != nil {
		return err
	}
	m, err := openModel(o.base)
	if err != nil {
		return err
	}
	defer m.close()

	q, err := findQuantized(m)
	if err != nil {
		return err
	}
	plans, stats, err := planMerge(m, q, ad, o, outDType, stderr)
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
	if err := od.makeTemp(o.force, stderr); err != nil {
		return err
	}
	beforeWriting()
	files, total, err := writeOutput(od.tmp, m, q, plans, sides, stderr)
	if err != nil {
		return err
	}
	if err := od.commit(); err != nil {
		return err
	}
	printSummary(stdout, stats, files, o.out, total, time.Since(start).Seconds())
	return nil
}

// outputDType returns the dtype of floating-point output tensors that
// -dtype names: "" for keep.
func outputDType(dtype string) (peft.DType, error) {
	if dtype == "keep" {
		return "", nil
	}
	d, err := peft.ParseDType(dtype)
	if err != nil || !d.Float() || d == peft.F64 {
		return "", usagef(mergeSynopsis, "-dtype %q: want keep, f32, f16 or bf16", dtype)
	}
	return d, nil
}

// beforeWriting runs once the temporary output directory exists, before the
// first output file is created: a hook for the tests.
var beforeWriting = func() {}

// printSummary says on w what the merge did: st, and the files and bytes it
// wrote to out in secs seconds.
func printSummary(w io.Writer, st mergeStats, files int, out string, total int64, secs float64) {
	fmt.Fprintf(w, "merged %s, replaced %s, converted %d, copied %d",
		plural(st.merged, "module"), plural(st.replaced, "tensor"), st.converted, st.copied)
	if st.skipped > 0 {
		fmt.Fprintf(w, ", skipped %s without a base tensor", plural(st.skipped, "adapter entry"))
	}
	if st.ignored > 0 {
		fmt.Fprintf(w, ", ignored %s that the configuration does not select", plural(st.ignored, "module"))
	}
	fmt.Fprintln(w)
	if st.dequantized > 0 || st.dropped > 0 {
		fmt.Fprintf(w, "bitsandbytes 4-bit: dequantized %s (%d merged), left out %s of their quantization state\n",
			plural(st.dequantized, "weight"), st.dequantMerged, plural(st.dropped, "tensor"))
	}
	if st.conv1D > 0 {
		fmt.Fprintf(w, "fan_in_fan_out: %s merged as Conv1D layers stored [in, out], as config.json's model_type %q says\n",
			plural(st.conv1D, "module"), st.modelType)
	}
	if st.layoutOverridden > 0 {
		fmt.Fprintf(w, "fan_in_fan_out: the adapter's flag disagrees with model_type %q for %s: followed the model, as PEFT does\n",
			st.modelType, plural(st.layoutOverridden, "module"))
	}
	fmt.Fprintf(w, "wrote %s to %s: %s in %.2f s, %.2f GB/s\n", plural(files, "file"), out, formatBytes(total), secs, float64(total)/secs/1e9)
}
