package main

import (
	"bytes"
	"errors"
	"flag"
	"path/filepath"
	"strings"
	"testing"
	"time"
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
	if _, stderr, err := runCmd(t, "merge", "-h"); !errors.Is(err, flag.ErrHelp) || !strings.Contains(stderr, "-allow-missing") {
		t.Errorf("merge -h: %v\n%s", err, stderr)
	}
	if _, _, err := runCmd(t, "merge", "-base", "a", "-adapter", "b", "-out", "c", "extra"); !errors.Is(err, errUsage) {
		t.Errorf("merge with an extra argument: %v", err)
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
