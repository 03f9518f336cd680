package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/golora/lora/peft"
)

func TestInspectAdapter(t *testing.T) {
	stdout, _, err := runCmd(t, "inspect", fixture(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"peft_type                LORA",
		"task_type                CAUSAL_LM",
		"base_model_name_or_path  gpt2",
		"lora_alpha               32",
		"target_modules           c_attn, c_proj",
		"fan_in_fan_out           true",
		"modules                  36",
		"parameters               811008 (LoRA 811008 + full 0)",
		"transformer.h.11.mlp.c_proj   transformer.h.11.mlp.c_proj.weight   3072×768 in×out  8     32     4      F32    30720",
	} {
		if !strings.Contains(stdout, want) {
			t.Errorf("inspect does not say %q:\n%s", want, stdout)
		}
	}
	if n := strings.Count(stdout, " in×out "); n != 36 {
		t.Errorf("%d module lines, want 36", n)
	}
}

func TestInspectModel(t *testing.T) {
	base, adapter := smallSetup(t, nil)
	for _, c := range []struct {
		path string
		want []string
	}{
		{base, []string{"model.position_ids", "I64", "[1, 40]", "model-00002-of-00002.safetensors", "10 tensors"}},
		{filepath.Join(base, indexName), []string{"10 tensors", "bytes  file"}},
		{filepath.Join(base, "model-00001-of-00002.safetensors"), []string{
			"model.layers.0.self_attn.v_proj.weight  BF16   [8, 16]   256", "5 tensors", `metadata of model-00001-of-00002.safetensors: {"format":"pt"}`}},
		{adapter, []string{"rank_pattern             \"v_proj\": 2", "modules_to_save          lm_head",
			"full tensors             1", "lm_head.weight                          F32    [32, 16]", "parameters               1024 (LoRA 512 + full 512)"}},
	} {
		stdout, _, err := runCmd(t, "inspect", c.path)
		if err != nil {
			t.Fatalf("inspect %s: %v", c.path, err)
		}
		for _, w := range c.want {
			if !strings.Contains(stdout, w) {
				t.Errorf("inspect %s does not say %q:\n%s", c.path, w, stdout)
			}
		}
	}
	if _, _, err := runCmd(t, "inspect", filepath.Join(base, "nothing")); err == nil {
		t.Error("inspect of a missing path succeeded")
	}
	if _, _, err := runCmd(t, "inspect", base, base); !errors.Is(err, errUsage) {
		t.Errorf("inspect with two paths: %v", err)
	}
}

func TestRunUsage(t *testing.T) {
	if _, _, err := runCmd(t); !errors.Is(err, errUsage) || err.Error() != "no command given" {
		t.Errorf("no command: %v", err)
	}
	if _, _, err := runCmd(t, "frobnicate"); !errors.Is(err, errUsage) || !strings.Contains(err.Error(), "frobnicate") {
		t.Errorf("unknown command: %v", err)
	}
	if stdout, _, err := runCmd(t, "help"); err != nil || !strings.Contains(stdout, "lora inspect") {
		t.Errorf("help: %v\n%s", err, stdout)
	}
	if stdout, stderr, err := runCmd(t, "merge", "-h"); err != nil || !strings.Contains(stdout, "-allow-missing") || stderr != "" {
		t.Errorf("merge -h: %v\nstdout:\n%s\nstderr:\n%s", err, stdout, stderr)
	}
	if _, _, err := runCmd(t, "merge", "-base", "a", "-adapter", "b", "-out", "c", "extra"); !errors.Is(err, errUsage) {
		t.Errorf("merge with an extra argument: %v", err)
	}
}

// TestUsage checks what the command prints for help and for errors of the
// command line: each command's full usage, and an error line that is only
// the error, followed by the usage.
func TestUsage(t *testing.T) {
	mergeWants := []string{"usage: lora merge -base", "-force", "Side files", "*.json", "*.txt", "*.model", "*.jinja", "*.tiktoken",
		"Symbolic links", "lora-merge-tmp-", fmt.Sprint(peakMiB) + " MiB plus twice the adapter's weights", "gpt2, openai-gpt", "65504", "-allow-missing",
		"all f16 or bf16\nneeds at most about " + fmt.Sprint(peakHalfMiB) + " MiB plus the adapter"}
	inspectWants := []string{"usage: lora inspect DIR_OR_FILE", "PEFT adapter directory", "square", "h.2 before h.10"}
	for _, c := range []struct {
		args           []string
		stdout, stderr []string
		status         int
	}{
		{args: []string{"help", "merge"}, stdout: mergeWants},
		{args: []string{"merge", "-h"}, stdout: mergeWants},
		{args: []string{"merge", "-help"}, stdout: mergeWants},
		{args: []string{"merge", "-base", "a", "--help"}, stdout: mergeWants},
		{args: []string{"help", "inspect"}, stdout: inspectWants},
		{args: []string{"inspect", "-h"}, stdout: inspectWants},
		{args: []string{"help"}, stdout: []string{"lora help [merge|inspect]"}},
		{args: []string{}, stderr: []string{"lora: no command given\nusage:\n  lora merge"}, status: 2},
		{args: []string{"frobnicate"}, stderr: []string{"lora: unknown command \"frobnicate\"\nusage:"}, status: 2},
		{args: []string{"help", "frobnicate"}, stderr: []string{"lora: help: unknown command \"frobnicate\"\nusage:"}, status: 2},
		{args: []string{"merge", "-adapter", "x"}, stderr: []string{"lora: merge: -base, -adapter and -out are required\nusage: lora merge -base"}, status: 2},
		{args: []string{"merge", "-bogus"}, stderr: []string{"lora: merge: flag provided but not defined: -bogus\nusage: lora merge"}, status: 2},
		{args: []string{"merge", "-base", "a", "-adapter", "b", "-out", "c", "-dtype", "f64"}, stderr: []string{"lora: merge: -dtype \"f64\": want keep, f32, f16 or bf16\nusage: lora merge"}, status: 2},
		{args: []string{"inspect"}, stderr: []string{"lora: inspect: want one adapter directory or safetensors model, got 0 arguments\nusage: lora inspect DIR_OR_FILE\n"}, status: 2},
		{args: []string{"inspect", "/nonexistent/x"}, stderr: []string{"lora: inspect: "}, status: 1},
	} {
		var stdout, stderr bytes.Buffer
		status := report(run(c.args, &stdout, &stderr), &stderr)
		if status != c.status {
			t.Errorf("%q: exit status %d, want %d", c.args, status, c.status)
		}
		for _, w := range c.stdout {
			if !strings.Contains(stdout.String(), w) {
				t.Errorf("%q: stdout does not say %q:\n%s", c.args, w, stdout.String())
			}
		}
		for _, w := range c.stderr {
			if !strings.Contains(stderr.String(), w) {
				t.Errorf("%q: stderr does not say %q:\n%s", c.args, w, stderr.String())
			}
		}
		if c.status == 0 && stderr.Len() > 0 {
			t.Errorf("%q: help on stderr:\n%s", c.args, stderr.String())
		}
		if n := strings.Count(stderr.String(), "flag provided but not defined"); n > 1 {
			t.Errorf("%q: the error is reported %d times:\n%s", c.args, n, stderr.String())
		}
		if strings.Contains(stderr.String(), ": usage") {
			t.Errorf("%q: an error ends in \": usage\":\n%s", c.args, stderr.String())
		}
	}
}

// TestInspectErrors checks that inspect says what is missing.
func TestInspectErrors(t *testing.T) {
	_, adapter := smallSetup(t, nil)
	if err := os.Remove(filepath.Join(adapter, peft.ConfigFile)); err != nil {
		t.Fatal(err)
	}
	empty := t.TempDir()
	loop := t.TempDir()
	if err := os.Symlink(singleName, filepath.Join(loop, singleName)); err != nil {
		t.Fatal(err)
	}
	loopConfig := t.TempDir()
	if err := os.Symlink(peft.ConfigFile, filepath.Join(loopConfig, peft.ConfigFile)); err != nil {
		t.Fatal(err)
	}
	_, emptyConfig := smallSetup(t, nil)
	if err := os.WriteFile(filepath.Join(emptyConfig, peft.ConfigFile), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ path, want string }{
		{adapter, "has adapter_model.safetensors but no adapter_config.json"},
		{loop, filepath.Join(loop, singleName) + ": too many levels of symbolic links"},
		{loopConfig, filepath.Join(loopConfig, peft.ConfigFile) + ": too many levels of symbolic links"},
		{emptyConfig, "adapter_config.json: unexpected end of JSON input: malformed file (in " + emptyConfig + ")"},
		{empty, "holds no PEFT adapter (adapter_config.json) and no safetensors model (model.safetensors or model.safetensors.index.json)"},
	} {
		_, _, err := runCmd(t, "inspect", c.path)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("inspect %s: %v, want %q", c.path, err, c.want)
		}
	}
}

// TestInspectOrder checks that a model's tensors are listed by name with
// numbers by value, and that an adapter's square modules are marked.
func TestInspectOrder(t *testing.T) {
	dir := t.TempDir()
	var specs []spec
	for _, i := range []int{10, 2, 1, 100, 11} {
		specs = append(specs, spec{fmt.Sprintf("h.%d.w", i), peft.F32, []int{2}})
	}
	specs = append(specs, spec{"h.01.w", peft.F32, []int{2}}, spec{"a", peft.F32, []int{2}})
	writeModel(t, dir, [][]spec{specs}, 1)
	stdout, _, err := runCmd(t, "inspect", dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, line := range strings.Split(stdout, "\n")[1:] {
		if f := strings.Fields(line); len(f) > 0 && (strings.HasPrefix(f[0], "h.") || f[0] == "a") {
			names = append(names, f[0])
		}
	}
	want := []string{"a", "h.1.w", "h.01.w", "h.2.w", "h.10.w", "h.11.w", "h.100.w"}
	if !slices.Equal(names, want) {
		t.Errorf("order %v, want %v", names, want)
	}

	_, adapter := conv1DSetup(t, "gpt2", true)
	stdout, _, err = runCmd(t, "inspect", adapter)
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(stdout, "square: layout unchecked"); n != 1 ||
		!regexp.MustCompile(`transformer\.h\.0\.attn\.c_proj .* 16×16 in×out .*square: layout unchecked`).MatchString(stdout) ||
		!strings.Contains(stdout, "square: 1 module has in = out") {
		t.Errorf("square modules not marked (%d):\n%s", n, stdout)
	}
}

func TestProgress(t *testing.T) {
	var buf bytes.Buffer
	p := newProgress(&buf, 4, 4000)
	p.tty = true
	p.last = p.last.Add(-time.Second)
	p.add(1, 1000)
	p.finish()
	out := buf.String()
	if !strings.Contains(out, "\r\x1b[K[") || !strings.Contains(out, "1/4 tensors") ||
		!strings.Contains(out, "25%") || !strings.HasSuffix(out, "\n") {
		t.Errorf("terminal progress %q", out)
	}
	buf.Reset()
	p = newProgress(&buf, 2, 2000)
	p.start = p.start.Add(-10 * time.Second)
	p.last = p.start
	p.add(1, 1000)
	p.add(1, 1000)
	p.finish()
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 || strings.Contains(buf.String(), "\r") ||
		!strings.Contains(lines[0], "50%  1/2 tensors  1.0 kB/2.0 kB") || !strings.Contains(lines[1], "100%  2/2 tensors") ||
		!strings.Contains(lines[0], "s left") {
		t.Errorf("log progress:\n%s", buf.String())
	}
}

// TestQuoteName checks the names that messages and inspect print as they
// are, and those they quote.
func TestQuoteName(t *testing.T) {
	for in, want := range map[string]string{
		"model.layers.0.self_attn.q_proj.weight": "model.layers.0.self_attn.q_proj.weight",
		"tête.ü":                                 "tête.ü",
		"":                                       `""`,
		"a b":                                    `"a b"`,
		`a"b`:                                    `"a\"b"`,
		`a\b`:                                    `"a\\b"`,
		"x\x1b[2Jy":                              `"x\x1b[2Jy"`,
		"nul\x00":                                `"nul\x00"`,
		"bad\xff\xfe":                            `"bad\xff\xfe"`,
		"tab\tnl\n":                              `"tab\tnl\n"`,
		"rtl\u202egpj.exe":                       `"rtl\u202egpj.exe"`,
		"del\x7f":                                `"del\x7f"`,
	} {
		if got := quoteName(in); got != want {
			t.Errorf("quoteName(%q) = %s, want %s", in, got, want)
		}
	}
}

// TestHostileNames checks that names with control characters (an escape
// sequence that clears the screen, a NUL, a newline) reach neither inspect's
// output nor merge's messages raw: they are quoted, escaped.
func TestHostileNames(t *testing.T) {
	const esc, nul = "evil\x1b[2J.weight", "nul\x00name.weight"
	raw := func(t *testing.T, what, s string) {
		t.Helper()
		for _, c := range s {
			if c < 0x20 && c != '\n' || c == 0x7f {
				t.Errorf("%s prints %q raw:\n%q", what, c, s)
				return
			}
		}
	}
	dir := t.TempDir()
	model := filepath.Join(dir, "model")
	writeModel(t, model, [][]spec{
		{{esc, peft.F32, []int{4}}, {"ok.weight", peft.F32, []int{4}}},
		{{nul, peft.F32, []int{4}}},
	}, 1)
	stdout, stderr, err := runCmd(t, "inspect", model)
	if err != nil {
		t.Fatalf("%v\n%s", err, stderr)
	}
	raw(t, "inspect of a model", stdout)
	for _, want := range []string{`"evil\x1b[2J.weight"  F32`, `"nul\x00name.weight"  F32`, "ok.weight"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("inspect does not say %s:\n%s", want, stdout)
		}
	}

	// An adapter whose module names hold them too.
	_, adapterDir := smallSetup(t, nil)
	a := smallAdapter()
	a.Modules[0].Name = "model.layers.0\x1b[2J.mlp.down_proj"
	a.Modules[1].Name = "model.layers.0.self\x00attn.q_proj"
	if err := peft.Save(adapterDir, a); err != nil {
		t.Fatal(err)
	}
	stdout, stderr, err = runCmd(t, "inspect", adapterDir)
	if err != nil {
		t.Fatalf("%v\n%s", err, stderr)
	}
	raw(t, "inspect of an adapter", stdout)
	for _, want := range []string{`"model.layers.0\x1b[2J.mlp.down_proj"  "model.layers.0\x1b[2J.mlp.down_proj.weight"`, `"model.layers.0.self\x00attn.q_proj"`} {
		if !strings.Contains(stdout, want) {
			t.Errorf("inspect does not say %s:\n%s", want, stdout)
		}
	}
	base, _ := smallSetup(t, nil)
	_, stderr, err = runCmd(t, "merge", "-base", base, "-adapter", adapterDir, "-out", filepath.Join(dir, "out"))
	if err == nil {
		t.Fatal("merged modules without base weights")
	}
	raw(t, "merge's error", err.Error())
	raw(t, "merge's stderr", stderr)
	_, stderr, err = runCmd(t, "merge", "-base", base, "-adapter", adapterDir, "-out", filepath.Join(dir, "out"), "-allow-missing")
	if err != nil {
		t.Fatalf("%v\n%s", err, stderr)
	}
	raw(t, "merge's stderr", stderr)
	for _, want := range []string{`skipping module "model.layers.0\x1b[2J.mlp.down_proj"`, `skipping module "model.layers.0.self\x00attn.q_proj"`} {
		if !strings.Contains(stderr, want) {
			t.Errorf("merge does not say %s:\n%s", want, stderr)
		}
	}
}
