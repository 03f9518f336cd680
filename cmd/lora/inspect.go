package main

import (
	"encoding/json"
	"fmt"
	"io"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/golora/lora/peft"
)

func runInspect(args []string, stdout, stderr io.Writer) error {
	if len(args) != 1 || strings.HasPrefix(args[0], "-") {
		if len(args) == 1 && (args[0] == "-h" || args[0] == "-help" || args[0] == "--help") {
			fmt.Fprintln(stdout, "usage: lora inspect DIR_OR_FILE")
			return nil
		}
		fmt.Fprintln(stderr, "usage: lora inspect DIR_OR_FILE")
		return fmt.Errorf("inspect: want one adapter directory or safetensors file: %w", errUsage)
	}
	path := args[0]
	if exists(filepath.Join(path, peft.ConfigFile)) {
		if err := inspectAdapter(stdout, path); err != nil {
			return fmt.Errorf("inspect: %w", err)
		}
		return nil
	}
	if err := inspectModel(stdout, path); err != nil {
		return fmt.Errorf("inspect: %w", err)
	}
	return nil
}

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
		fmt.Fprintf(tw, "task_type\t%s\n", rawString(tt))
	}
	fmt.Fprintf(tw, "base_model_name_or_path\t%s\n", c.BaseModelNameOrPath)
	fmt.Fprintf(tw, "r\t%d\n", c.R)
	fmt.Fprintf(tw, "lora_alpha\t%s\n", num(c.LoraAlpha))
	fmt.Fprintf(tw, "use_rslora\t%v\n", c.UseRSLoRA)
	targets := strings.Join(c.TargetModules, ", ")
	if c.TargetModulesRegex != "" {
		targets = strconv.Quote(c.TargetModulesRegex)
	}
	fmt.Fprintf(tw, "target_modules\t%s\n", targets)
	fmt.Fprintf(tw, "fan_in_fan_out\t%v\n", c.FanInFanOut)
	fmt.Fprintf(tw, "bias\t%s\n", c.Bias)
	fmt.Fprintf(tw, "modules_to_save\t%s\n", orNone(strings.Join(c.ModulesToSave, ", ")))
	fmt.Fprintf(tw, "rank_pattern\t%s\n", pattern(c.RankPattern))
	fmt.Fprintf(tw, "alpha_pattern\t%s\n", pattern(c.AlphaPattern))
	nl, nf := a.Params()
	fmt.Fprintf(tw, "modules\t%d\n", len(a.Modules))
	fmt.Fprintf(tw, "full tensors\t%d\n", len(a.Full))
	fmt.Fprintf(tw, "parameters\t%d (LoRA %d + full %d)\n", nl+nf, nl, nf)
	tw.Flush()

	if len(a.Modules) > 0 {
		fmt.Fprintln(w)
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "module\tbase weight\tstored as\trank\talpha\tscale\tdtype\tparameters")
		for _, m := range a.Modules {
			rows, cols := m.WeightShape()
			layout := "out×in"
			if m.Transposed() {
				layout = "in×out"
			}
			fmt.Fprintf(tw, "%s\t%s\t%d×%d %s\t%d\t%s\t%s\t%s\t%d\n", m.Name, m.Weight(), rows, cols, layout,
				m.Rank, num(m.Alpha), num(float64(m.Scale)), m.DType, m.Params())
		}
		tw.Flush()
	}
	if len(a.Full) > 0 {
		fmt.Fprintln(w)
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "full tensor (replaces the base tensor)\tdtype\tshape")
		for _, t := range a.Full {
			fmt.Fprintf(tw, "%s\t%s\t%s\n", t.Name, t.DType, shape(t.Shape))
		}
		tw.Flush()
	}
	return nil
}

func inspectModel(w io.Writer, path string) error {
	m, err := openModel(path)
	if err != nil {
		return err
	}
	defer m.close()
	var total, elems int64
	n := 0
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	sharded := m.index != nil
	if sharded {
		fmt.Fprintln(tw, "tensor\tdtype\tshape\tbytes\tfile")
	} else {
		fmt.Fprintln(tw, "tensor\tdtype\tshape\tbytes")
	}
	for _, s := range m.shards {
		for _, t := range s.st.Tensors() {
			n++
			total += t.Length
			elems += t.Elements()
			if sharded {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\n", t.Name, t.DType, shape(t.Shape), t.Length, s.name)
			} else {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%d\n", t.Name, t.DType, shape(t.Shape), t.Length)
			}
		}
	}
	tw.Flush()
	files := make([]string, len(m.shards))
	for i, s := range m.shards {
		files[i] = filepath.Join(m.dir, s.name)
	}
	fmt.Fprintf(w, "\n%d tensors, %d elements, %s of data in %s\n", n, elems, formatBytes(total), strings.Join(files, ", "))
	for _, s := range m.shards {
		if md := s.st.Metadata(); len(md) > 0 {
			b, _ := json.Marshal(md)
			fmt.Fprintf(w, "metadata of %s: %s\n", s.name, b)
		}
	}
	return nil
}

func shape(s []int) string {
	if len(s) == 0 {
		return "[]"
	}
	p := make([]string, len(s))
	for i, d := range s {
		p[i] = strconv.Itoa(d)
	}
	return "[" + strings.Join(p, ", ") + "]"
}

func num(v float64) string { return strconv.FormatFloat(v, 'g', -1, 64) }

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

func pattern(p peft.Pattern) string {
	if len(p) == 0 {
		return "none"
	}
	parts := make([]string, len(p))
	for i, e := range p {
		parts[i] = strconv.Quote(e.Key) + ": " + num(e.Value)
	}
	return strings.Join(parts, ", ")
}

func rawString(r json.RawMessage) string {
	var s string
	if json.Unmarshal(r, &s) == nil {
		return s
	}
	return string(r)
}
