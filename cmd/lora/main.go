// Command lora works with LoRA adapters in Hugging Face PEFT's format.
//
// Usage:
//
//	lora merge -base DIR_OR_FILE -adapter DIR -out DIR [-scale 1.0] [-dtype keep|f32|f16|bf16] [-allow-missing]
//	lora inspect DIR_OR_FILE
//
// merge folds a PEFT LoRA adapter into the weights of its base model, stored
// as model.safetensors or sharded (model.safetensors.index.json and its
// shards), and writes a model of the same layout to -out: every adapted
// weight W becomes W + scale·s·ΔW, computed in float32 by package lora (on
// the GPU in the cuda build) and rounded once to the output dtype; every
// tensor the adapter saved whole (modules_to_save) replaces the base tensor
// of the same name; every other tensor is copied byte for byte. It streams,
// one tensor at a time, so a model far larger than the free memory merges.
// Every output file is written to a temporary file beside it and renamed
// when all are complete; the input is never modified. Before writing
// anything, merge checks that every module of the adapter has its base
// weight, with the right shape: a missing one is an error unless
// -allow-missing, which skips it; a wrong shape is always an error.
//
// -dtype converts every floating-point tensor (F64, F32, F16, BF16) of the
// output to f32, f16 or bf16, rounding to nearest even; keep, the default,
// leaves each tensor's dtype as it is.
//
// A progress bar goes to standard error (plain lines when that is not a
// terminal), and a summary to standard output: modules merged, tensors
// replaced, converted and copied, bytes written, seconds and GB/s.
//
// inspect describes an adapter directory (its configuration, each module
// with its rank, alpha and scale, and the parameter count) or a safetensors
// model (a file, a sharded model's index or a directory holding either): each
// tensor's name, dtype and shape.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
)

const usage = `usage:
  lora merge -base DIR_OR_FILE -adapter DIR -out DIR [-scale 1.0] [-dtype keep|f32|f16|bf16] [-allow-missing]
  lora inspect DIR_OR_FILE

merge    fold a PEFT LoRA adapter into a safetensors model (single file or sharded)
inspect  describe a PEFT adapter directory or a safetensors model
`

// errUsage marks errors of the command line itself.
var errUsage = errors.New("usage")

func main() {
	err := run(os.Args[1:], os.Stdout, os.Stderr)
	switch {
	case err == nil:
	case errors.Is(err, flag.ErrHelp):
	case errors.Is(err, errUsage):
		fmt.Fprintln(os.Stderr, "lora:", err)
		os.Exit(2)
	default:
		fmt.Fprintln(os.Stderr, "lora:", err)
		os.Exit(1)
	}
}

// run runs the command line args (without the program name), writing
// results to stdout and progress and diagnostics to stderr.
func run(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return fmt.Errorf("no command given: %w", errUsage)
	}
	switch args[0] {
	case "merge":
		return runMerge(args[1:], stdout, stderr)
	case "inspect":
		return runInspect(args[1:], stdout, stderr)
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprint(stderr, usage)
	return fmt.Errorf("unknown command %q: %w", args[0], errUsage)
}
