package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"

	"github.com/golora/lora/internal/natsort"
	"github.com/golora/lora/peft"
)

const inspectSynopsis = "usage: lora inspect DIR_OR_FILE\n"

// inspectUsage is what "lora inspect -h" and "lora help inspect" print.
const inspectUsage = inspectSynopsis + `
inspect describes what DIR_OR_FILE holds:

  - a PEFT adapter directory (adapter_config.json and
    adapter_model.safetensors): its configuration (peft_type, r, lora_alpha,
    target_modules, fan_in_fan_out, rank_pattern, alpha_pattern, ...), then
    each module with its base weight, the shape and layout it is stored in
    (out×in, or in×out with fan_in_fan_out and for embeddings), rank, alpha,
    scale, dtype and parameter count, and the tensors saved whole. A square
    weight's layout cannot be checked from shapes: such modules are marked,
    since a wrong fan_in_fan_out would merge the transposed update.
  - a safetensors model: a .safetensors file, a sharded model's
    model.safetensors.index.json, or a directory holding model.safetensors or
    the index: every tensor's name, dtype, shape and bytes (and its shard),
    in name order with numbers by value (h.2 before h.10), then the totals
    and each file's metadata. A weight that bitsandbytes stores in 4 bits
    is listed as NF4, with the shape it has unquantized, its block size and
    the dtype it dequantizes to; its bytes count the tensors of its
    quantization state (.absmax, .quant_map, .quant_state.*, .nested_*),
    which are not listed. One that cannot be read (fp4, say) is listed as
    its tensors are, with a warning that says why.

A name (of a tensor, module or file, in this output and in the messages of
inspect and merge) that holds a space, a quote, a backslash, a control
character or bytes that are not UTF-8 is printed quoted, with those escaped
as Go escapes them ("a\x1b[2J", "\x00"); other names are printed as they are.
`

// runInspect runs "lora inspect" with the arguments args.
func runInspect(args []string, stdout, stderr io.Writer) error {
	if len(args) == 1 && (args[0] == "-h" || args[0] == "-help" || args[0] == "--help") {
		fmt.Fprint(stdout, inspectUsage)
		return nil
	}
	if len(args) != 1 || strings.HasPrefix(args[0], "-") {
		return usagef(inspectSynopsis, "inspect: want one adapter directory or safetensors model, got %d arguments", len(args))
	}
	path := args[0]
	isAdapter, err := present(filepath.Join(path, peft.ConfigFile))
	if err != nil && !errors.Is(err, syscall.ENOTDIR) {
		return fmt.Errorf("inspect: %w", err)
	}
	if isAdapter {
		if err := inspectAdapter(stdout, path); err != nil {
			return fmt.Errorf("inspect: %w", err)
		}
		return nil
	}
	// A model, or nothing: openModel says which, and what it cannot read.
	if fi, err := os.Stat(path); err == nil && fi.IsDir() && !exists(filepath.Join(path, singleName)) && !exists(filepath.Join(path, indexName)) &&
		!isLink(filepath.Join(path, singleName)) && !isLink(filepath.Join(path, indexName)) {
		if exists(filepath.Join(path, peft.WeightsFile)) {
			return fmt.Errorf("inspect: %s has %s but no %s: a PEFT adapter needs both", path, peft.WeightsFile, peft.ConfigFile)
		}
		return fmt.Errorf("inspect: %s holds no PEFT adapter (%s) and no safetensors model (%s or %s)", path, peft.ConfigFile, singleName, indexName)
	}
	if err := inspectModel(stdout, path); err != nil {
		return fmt.Errorf("inspect: %w", err)
	}
	return nil
}

// isLink reports whether path is a symbolic link, whether or not it can be
// followed.
func isLink(path string) bool {
	fi, err := os.Lstat(path)
	return err == nil && fi.Mode()&os.ModeSymlink != 0
}

// inspectAdapter describes the PEFT adapter in dir on w.
func inspectAdapter(w io.Writer, dir string) error {
	a, err := peft.Load(dir)
	if err != nil {
		return err
	}
	c := a.Config
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "PEFT adapter\t%s\n", dir)
	fmt.Fprintf(tw, "peft_type\t%s\n", c.PeftType)
	if tt, ok := c.Extra["task_type"]; ok {
		fmt.Fprintf(tw, "task_type\t%s\n", quoteName(rawString(tt)))
	}
	fmt.Fprintf(tw, "base_model_name_or_path\t%s\n", quoteName(c.BaseModelNameOrPath))
	fmt.Fprintf(tw, "r\t%d\n", c.R)
	fmt.Fprintf(tw, "lora_alpha\t%s\n", formatNum(c.LoraAlpha))
	fmt.Fprintf(tw, "use_rslora\t%v\n", c.UseRSLoRA)
	targets := quoteNames(c.TargetModules)
	if c.TargetModulesRegex != "" {
		targets = strconv.Quote(c.TargetModulesRegex)
	}
	fmt.Fprintf(tw, "target_modules\t%s\n", targets)
	fmt.Fprintf(tw, "fan_in_fan_out\t%v\n", c.FanInFanOut)
	fmt.Fprintf(tw, "bias\t%s\n", quoteName(c.Bias))
	fmt.Fprintf(tw, "modules_to_save\t%s\n", orNone(quoteNames(c.ModulesToSave)))
	fmt.Fprintf(tw, "rank_pattern\t%s\n", formatPattern(c.RankPattern))
	fmt.Fprintf(tw, "alpha_pattern\t%s\n", formatPattern(c.AlphaPattern))
	nl, nf := a.Params()
	fmt.Fprintf(tw, "modules\t%d\n", len(a.Modules))
	fmt.Fprintf(tw, "full tensors\t%d\n", len(a.Full))
	fmt.Fprintf(tw, "parameters\t%d (LoRA %d + full %d)\n", nl+nf, nl, nf)
	tw.Flush()

	if len(a.Modules) > 0 {
		fmt.Fprintln(w)
		var table bytes.Buffer
		tw = tabwriter.NewWriter(&table, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "module\tbase weight\tstored as\trank\talpha\tscale\tdtype\tparameters\t")
		square := 0
		for _, m := range a.Modules {
			rows, cols := m.WeightShape()
			layout := "out×in"
			if m.Transposed() {
				layout = "in×out"
			}
			note := ""
			if m.In == m.Out && !m.Embedding {
				note = "square: layout unchecked"
				square++
			}
			fmt.Fprintf(tw, "%s\t%s\t%d×%d %s\t%d\t%s\t%s\t%s\t%d\t%s\n", quoteName(m.Name), quoteName(m.Weight()), rows, cols, layout,
				m.Rank, formatNum(m.Alpha), formatNum(float64(m.Scale)), m.DType, m.Params(), note)
		}
		tw.Flush()
		writeTrimmed(w, &table)
		if square > 0 {
			verb := "have"
			if square == 1 {
				verb = "has"
			}
			fmt.Fprintf(w, "\nsquare: %s %s in = out, so %s; merge follows the base model's config.json for GPT-2 and its kin\n",
				plural(square, "module"), verb, squareNote)
		}
	}
	if len(a.Full) > 0 {
		fmt.Fprintln(w)
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "full tensor (replaces the base tensor)\tdtype\tshape")
		for _, t := range a.Full {
			fmt.Fprintf(tw, "%s\t%s\t%s\n", quoteName(t.Name), t.DType, formatShape(t.Shape))
		}
		tw.Flush()
	}
	return nil
}

// writeTrimmed writes the lines of table to w without the spaces that
// tabwriter pads their last cells with.
func writeTrimmed(w io.Writer, table *bytes.Buffer) {
	for _, line := range strings.SplitAfter(table.String(), "\n") {
		if line != "" {
			fmt.Fprintln(w, strings.TrimRight(line, " \n"))
		}
	}
}

// inspectModel lists the tensors of the safetensors model at path on w. A
// 4-bit weight of bitsandbytes is listed as NF4, with the shape it has
// unquantized and the bytes of its codes and of its quantization state,
// whose tensors are not listed; a 4-bit weight that cannot be read is
// listed as its tensors are, with a warning that says why.
func inspectModel(w io.Writer, path string) error {
	m, err := openModel(path)
	if err != nil {
		return err
	}
	defer m.close()
	q := scanQuantized(m)
	var total, elems int64
	n := 0
	var table bytes.Buffer
	tw := tabwriter.NewWriter(&table, 0, 0, 2, ' ', 0)
	sharded := m.index != nil
	header := "tensor\tdtype\tshape\tbytes"
	if sharded {
		header += "\tfile"
	}
	end := "\n" // of a row: a column of notes for 4-bit weights, or none
	if q != nil && len(q.weights) > 0 {
		header += "\tquantization"
		end = "\t\n"
	}
	fmt.Fprintln(tw, header)
	type entry struct {
		t     peft.TensorInfo
		shard string
	}
	var all []entry
	for _, s := range m.shards {
		for _, t := range s.st.Tensors() {
			all = append(all, entry{t, s.name})
		}
	}
	slices.SortFunc(all, func(a, b entry) int { return natsort.Compare(a.t.Name, b.t.Name) })
	for _, e := range all {
		t := e.t
		total += t.Length
		if q.isAux(t.Name) {
			continue
		}
		n++
		dtype, shape, size, count, note := string(t.DType), t.Shape, t.Length, t.Elements(), ""
		if qw := q.weight(t.Name); qw != nil {
			dtype, shape, size, note = "NF4", []int{qw.Rows, qw.Cols}, size+q.bytes[t.Name], "\t"+quantNote(qw)
			count = int64(qw.Rows) * int64(qw.Cols)
		}
		elems += count
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d", quoteName(t.Name), dtype, formatShape(shape), size)
		if sharded {
			fmt.Fprintf(tw, "\t%s", quoteName(e.shard))
		}
		fmt.Fprint(tw, note, end)
	}
	tw.Flush()
	writeTrimmed(w, &table)
	files := make([]string, len(m.shards))
	for i, s := range m.shards {
		files[i] = filepath.Join(m.dir, quoteName(s.name))
	}
	fmt.Fprintf(w, "\n%d tensors, %d elements, %s of data in %s\n", n, elems, formatBytes(total), strings.Join(files, ", "))
	if q != nil && len(q.weights) > 0 {
		fmt.Fprintf(w, "4-bit weights (bitsandbytes): %d, listed with the dtype and shape they have unquantized, their bytes those of their codes and of their %s of quantization state (absmax, quant_map, quant_state, nested_absmax, nested_quant_map), which are not listed\n",
			len(q.weights), plural(q.aux, "tensor"))
	}
	if m.index != nil {
		for _, name := range m.index.unlisted {
			fmt.Fprintf(w, "warning: %s holds tensor %s, which the index's weight_map does not list (merge writes it and lists it)\n",
				quoteName(m.shards[m.where[name].shard].name), quoteName(name))
		}
	}
	for _, err := range q.errors() {
		fmt.Fprintf(w, "warning: %v: its tensors are listed as they are\n", err)
	}
	for _, s := range m.shards {
		if md := s.st.Metadata(); len(md) > 0 {
			b, _ := json.Marshal(md)
			fmt.Fprintf(w, "metadata of %s: %s\n", quoteName(s.name), b)
		}
	}
	return nil
}

// formatShape returns the shape s as "[d0, d1, ...]".
func formatShape(s []int) string {
	if len(s) == 0 {
		return "[]"
	}
	p := make([]string, len(s))
	for i, d := range s {
		p[i] = strconv.Itoa(d)
	}
	return "[" + strings.Join(p, ", ") + "]"
}

// formatNum returns v in the fewest digits that read back as v.
func formatNum(v float64) string { return strconv.FormatFloat(v, 'g', -1, 64) }

// orNone returns s, or "none" for an empty s.
func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

// formatPattern returns a rank_pattern or alpha_pattern as "key": value
// pairs in order, or "none".
func formatPattern(p peft.Pattern) string {
	if len(p) == 0 {
		return "none"
	}
	parts := make([]string, len(p))
	for i, e := range p {
		parts[i] = strconv.Quote(e.Key) + ": " + formatNum(e.Value)
	}
	return strings.Join(parts, ", ")
}

// rawString returns the JSON r unquoted when it is a string, and as it is
// otherwise.
func rawString(r json.RawMessage) string {
	var s string
	if json.Unmarshal(r, &s) == nil {
		return s
	}
	return string(r)
}
