// Command lora works with LoRA adapters in Hugging Face PEFT's format.
//
// Usage:
//
//	lora merge -base DIR_OR_FILE -adapter DIR -out DIR [-scale 1.0] [-dtype keep|f32|f16|bf16] [-allow-missing] [-force]
//	lora inspect DIR_OR_FILE
//	lora help [merge|inspect]
//
// merge folds a PEFT LoRA adapter into the weights of its base model, stored
// as model.safetensors or sharded (model.safetensors.index.json and its
// shards), and writes a model of the same layout to -out: every adapted
// weight W becomes W + scale·s·ΔW, computed in float32 by package lora (on
// the GPU in the cuda build) and rounded once to the output dtype (an f16 or
// bf16 weight kept in its dtype merges through a matrix of that dtype, with
// no float32 copy of it, and the same result); every
// tensor the adapter saved whole (modules_to_save) replaces the base tensor
// of the same name; every other tensor is copied byte for byte. It streams,
// in blocks of rows, so a model, or a single tensor, far larger than the
// memory merges. Everything is written into a temporary directory beside
// -out, which becomes -out by one rename when it is complete; the input is
// never modified. A merge holds a lock on -out while it runs (flock, where
// the system has it), so that a second merge into it is refused, and
// removes its temporary directory when SIGINT or SIGTERM stops it. Before
// writing anything, merge checks that every module
// of the adapter has its base weight, with the right shape: a missing one is
// an error unless -allow-missing, which skips it; a wrong shape is always an
// error. A merge that would write NaN or ±Inf where the base tensor held a
// finite value (an overflow of the update or of the conversion to -dtype) is
// refused. A weight that bitsandbytes stores in 4 bits (NF4) is written
// unquantized, in the dtype of its quant_state: each value exactly
// NF4[code]·absmax, merged where the adapter targets it, and rounded once;
// the tensors of its quantization state are left out, and config.json loses
// its quantization_config. "lora help merge" says more.
//
// inspect describes an adapter directory (its configuration, each module
// with its rank, alpha and scale, and the parameter count) or a safetensors
// model (a file, a sharded model's index or a directory holding either): each
// tensor's name, dtype and shape, a 4-bit weight as NF4 with the shape it has
// unquantized.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
)

const usage = `usage:
  lora merge -base DIR_OR_FILE -adapter DIR -out DIR [-scale 1.0] [-dtype keep|f32|f16|bf16] [-allow-missing] [-force]
  lora inspect DIR_OR_FILE
  lora help [merge|inspect]

merge    fold a PEFT LoRA adapter into a safetensors model (single file or sharded)
inspect  describe a PEFT adapter directory or a safetensors model
help     print this, or the full usage of merge or inspect
`

// errUsage marks errors of the command line itself: errors.Is(err, errUsage)
// holds for them, and the command prints the usage after the error.
var errUsage = errors.New("usage")

// usageError is an error of the command line, with the usage to print after
// it. Its message is only what went wrong.
type usageError struct {
	msg   string
	usage string // printed after the message
}

func (e *usageError) Error() string        { return e.msg }
func (e *usageError) Is(target error) bool { return target == errUsage }

// usagef returns a usageError whose message is formatted as by fmt.Sprintf,
// followed by the text u when it is reported.
func usagef(u, format string, args ...any) error {
	return &usageError{msg: fmt.Sprintf(format, args...), usage: u}
}

func main() {
	os.Exit(report(run(os.Args[1:], os.Stdout, os.Stderr), os.Stderr))
}

// report writes err to stderr, as "lora: " and the message, followed by the
// usage for an error of the command line, and returns the exit status: 0
// for no error or a request for help, 2 for a usage error, 1 otherwise.
func report(err error, stderr io.Writer) int {
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		fmt.Fprintln(stderr, "lora:", err)
		var u *usageError
		if errors.As(err, &u) && u.usage != "" {
			fmt.Fprint(stderr, u.usage)
		}
		return 2
	}
	fmt.Fprintln(stderr, "lora:", err)
	return 1
}

// run runs the command line args (without the program name), writing
// results to stdout and progress and diagnostics to stderr.
func run(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return usagef(usage, "no command given")
	}
	switch args[0] {
	case "merge":
		return runMerge(args[1:], stdout, stderr)
	case "inspect":
		return runInspect(args[1:], stdout, stderr)
	case "help", "-h", "-help", "--help":
		return runHelp(args[1:], stdout)
	}
	return usagef(usage, "unknown command %q", args[0])
}

// runHelp prints the usage of the command named in args, or the top-level
// usage when there is none.
func runHelp(args []string, stdout io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stdout, usage)
		return nil
	}
	if len(args) > 1 {
		return usagef(usage, "help: want at most one command, got %d arguments", len(args))
	}
	switch args[0] {
	case "merge":
		printMergeUsage(stdout)
	case "inspect":
		fmt.Fprint(stdout, inspectUsage)
	case "help":
		fmt.Fprint(stdout, usage)
	default:
		return usagef(usage, "help: unknown command %q", args[0])
	}
	return nil
}
