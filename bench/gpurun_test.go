package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The GPU bundle's script (gpu-run.sh) is tested here with fakes of what a
// GPU machine provides: nvidia-smi, compute-sanitizer in the places the
// toolkits put it, and the bundle's binaries, each of which logs its
// command line. PATH holds only the fakes and the few host tools the script
// uses, so a compute-sanitizer installed on the test machine is not seen.

// fakeSanitizer logs the tool it runs, then runs the program after its
// options, and exits 3 (compute-sanitizer's --error-exitcode) when the tool
// is the one named in FAKE_FAIL_TOOL.
const fakeSanitizer = `#!/bin/sh
if [ "$1" = --version ]; then echo "Compute Sanitizer version 2099.1"; exit 0; fi
tool=
while [ $# -gt 0 ]; do
  case $1 in
    --tool) tool=$2; shift 2 ;;
    --error-exitcode|--leak-check) shift 2 ;;
    --*) shift ;;
    *) break ;;
  esac
done
echo "sanitizer $0 $tool" >>"$FAKE_LOG"
"$@" || exit $?
[ "$tool" = "${FAKE_FAIL_TOOL:-}" ] && exit 3
exit 0
`

// fakeBinary logs its name and arguments; it sleeps FAKE_SLEEP seconds
// when its name is FAKE_SLOW. Run as the result tests (TestResultFamilies,
// TestForwardMMA), it prints FAMILY lines as they do, within the lines of
// go test -test.v: lora_forward_mma_bf16's verdict is FAKE_MMA (PASS by
// default), and the binary fails when that is a FAIL; FAKE_NO_FAMILIES=1
// leaves the lines out.
const fakeBinary = `#!/bin/sh
echo "$(basename "$0") $*" >>"$FAKE_LOG"
if [ "$(basename "$0")" = "${FAKE_SLOW:-}" ]; then sleep "$FAKE_SLEEP"; fi
rc=0
if [ -z "${FAKE_NO_FAMILIES:-}" ]; then
  case "$*" in
  *"-test.run TestResultFamilies"*)
    echo "=== RUN   TestResultFamilies"
    echo "    result_test.go:95: FAMILY lora_forward_small: PASS (5 shapes)"
    echo "    result_test.go:95: FAMILY lora_forward_mma_bf16: ${FAKE_MMA:-PASS (2 shapes)}"
    case "${FAKE_MMA:-}" in FAIL*) rc=1 ;; esac ;;
  *"-test.run TestForwardMMA"*)
    echo "    mma_test.go:170: FAMILY lora_forward_mma_f16 (direct launches): PASS (19 shapes)" ;;
  esac
fi
echo "ok"
exit $rc
`

type bundleRun struct {
	summary string
	calls   []string // the log of the fakes, one line each
	code    int      // run.sh's exit status
}

// runBundle lays out a bundle with fake binaries in a temporary directory,
// puts fakes of compute-sanitizer at the paths in sanitizers (relative to a
// fake root of the file system, or "PATH" for the fakes' own directory),
// and runs run.sh with the environment env added, {root} in it standing for
// the fake root.
func runBundle(t *testing.T, sanitizers []string, env ...string) bundleRun {
	t.Helper()
	dir := t.TempDir()
	bundle, bin, root, out := filepath.Join(dir, "bundle"), filepath.Join(dir, "bin"), filepath.Join(dir, "root"), filepath.Join(dir, "out")
	for _, d := range []string{bundle, bin, root} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	script, err := os.ReadFile("gpu-run.sh")
	if err != nil {
		t.Fatal(err)
	}
	write := func(path, text string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(text), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	write(filepath.Join(bundle, "run.sh"), string(script))
	for _, name := range []string{"lora.test", "cuda.test", "bench"} {
		write(filepath.Join(bundle, name), fakeBinary)
	}
	write(filepath.Join(bin, "nvidia-smi"), "#!/bin/sh\necho 'Fake GPU, 999.99, 1024 MiB'\n")
	write(filepath.Join(bin, "python3"), "#!/bin/sh\nexit 1\n") // no PyTorch
	for _, tool := range []string{"bash", "sh", "timeout", "tee", "sed", "tail", "mkdir", "dirname",
		"basename", "ls", "sort", "grep", "cat", "sleep"} {
		p, err := exec.LookPath(tool)
		if err != nil {
			t.Fatalf("the script needs %s: %v", tool, err)
		}
		if err := os.Symlink(p, filepath.Join(bin, tool)); err != nil {
			t.Fatal(err)
		}
	}
	for _, s := range sanitizers {
		if s == "PATH" {
			write(filepath.Join(bin, "compute-sanitizer"), fakeSanitizer)
		} else {
			write(filepath.Join(root, s), fakeSanitizer)
		}
	}
	log := filepath.Join(dir, "calls.log")
	cmd := exec.Command(filepath.Join(bin, "bash"), filepath.Join(bundle, "run.sh"), out)
	cmd.Env = []string{"PATH=" + bin, "LORA_TOOLKIT_ROOT=" + root, "FAKE_LOG=" + log, "HOME=" + dir}
	for _, v := range env {
		cmd.Env = append(cmd.Env, strings.ReplaceAll(v, "{root}", root))
	}
	output, err := cmd.CombinedOutput()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	summary, err := os.ReadFile(filepath.Join(out, "summary.txt"))
	if err != nil {
		t.Fatalf("no summary.txt: %v; the script printed:\n%s", err, output)
	}
	calls, _ := os.ReadFile(log)
	return bundleRun{summary: string(summary), calls: strings.Split(strings.TrimSpace(string(calls)), "\n"), code: code}
}

var sanitizerTools = []string{"memcheck", "racecheck", "synccheck", "initcheck"}

func TestGPURunFindsSanitizer(t *testing.T) {
	for _, tc := range []struct {
		name       string
		sanitizers []string // fakes, relative to the fake root
		env        []string
		want       string // the path the script must use, relative to the fake root
	}{
		{"toolkit symlink", []string{"usr/local/cuda/bin/compute-sanitizer"}, nil, "usr/local/cuda/bin/compute-sanitizer"},
		{"versioned toolkits, newest first",
			[]string{"usr/local/cuda-11.8/bin/compute-sanitizer", "usr/local/cuda-12.10/bin/compute-sanitizer", "usr/local/cuda-12.9/bin/compute-sanitizer"},
			nil, "usr/local/cuda-12.10/bin/compute-sanitizer"},
		{"toolkit's own folder", []string{"usr/local/cuda-12.4/compute-sanitizer/compute-sanitizer"}, nil, "usr/local/cuda-12.4/compute-sanitizer/compute-sanitizer"},
		{"Debian", []string{"usr/lib/nvidia-cuda-toolkit/compute-sanitizer/compute-sanitizer"}, nil, "usr/lib/nvidia-cuda-toolkit/compute-sanitizer/compute-sanitizer"},
		{"HPC SDK", []string{"opt/nvidia/hpc_sdk/Linux_x86_64/24.5/cuda/12.4/bin/compute-sanitizer"}, nil, "opt/nvidia/hpc_sdk/Linux_x86_64/24.5/cuda/12.4/bin/compute-sanitizer"},
		{"CUDA_HOME before the defaults", []string{"usr/local/cuda/bin/compute-sanitizer", "sdk/bin/compute-sanitizer"}, []string{"CUDA_HOME={root}/sdk"}, "sdk/bin/compute-sanitizer"},
		{"PATH before the toolkits", []string{"PATH", "usr/local/cuda/bin/compute-sanitizer"}, nil, "PATH"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := runBundle(t, tc.sanitizers, tc.env...)
			if r.code != 0 {
				t.Errorf("run.sh exited %d, want 0; summary:\n%s", r.code, r.summary)
			}
			if strings.Contains(r.summary, "MISSING: compute-sanitizer") {
				t.Errorf("summary says the sanitizer is missing:\n%s", r.summary)
			}
			var ran []string
			for _, c := range r.calls {
				f := strings.Fields(c)
				if len(f) == 3 && f[0] == "sanitizer" {
					wantPath := tc.want
					if !strings.HasSuffix(f[1], "/"+wantPath) && !(wantPath == "PATH" && strings.HasSuffix(f[1], "/bin/compute-sanitizer")) {
						t.Errorf("ran %s, want the one at %s", f[1], wantPath)
					}
					ran = append(ran, f[2])
				}
			}
			if strings.Join(ran, " ") != strings.Join(sanitizerTools, " ") {
				t.Errorf("ran the tools %v, want %v", ran, sanitizerTools)
			}
			for _, tool := range sanitizerTools {
				if !strings.Contains(r.summary, "   "+tool+": PASS") {
					t.Errorf("summary has no PASS line for %s:\n%s", tool, r.summary)
				}
			}
			if !strings.Contains(r.summary, "RESULT: PASS") {
				t.Errorf("summary does not end in RESULT: PASS:\n%s", r.summary)
			}
		})
	}
}

// TestGPURunRacecheckReachesEveryBarrierKernel checks that racecheck and
// synccheck run the tests of the kernels with barriers, the backward ones
// included.
func TestGPURunRacecheckReachesEveryBarrierKernel(t *testing.T) {
	r := runBundle(t, []string{"usr/local/cuda/bin/compute-sanitizer"})
	want := []string{"TestKernelForwardPaths", "TestForwardPlannedVariants", "TestKernelBackwardPaths",
		"TestMergeUnmerge", "TestAbsMax", "TestMSE", "TestBankForward"}
	runs := 0
	for i, c := range r.calls {
		if !strings.HasPrefix(c, "sanitizer ") || !(strings.HasSuffix(c, " racecheck") || strings.HasSuffix(c, " synccheck")) {
			continue
		}
		runs++
		if i+1 >= len(r.calls) || !strings.HasPrefix(r.calls[i+1], "lora.test ") {
			t.Fatalf("%q ran no lora.test", c)
		}
		for _, name := range want {
			if !strings.Contains(r.calls[i+1], name) {
				t.Errorf("%q runs %q, which does not name %s", c, r.calls[i+1], name)
			}
		}
	}
	if runs != 2 {
		t.Errorf("racecheck and synccheck ran %d times in all, want 2:\n%s", runs, strings.Join(r.calls, "\n"))
	}
}

func TestGPURunReportsMissingSanitizer(t *testing.T) {
	r := runBundle(t, nil)
	if r.code != 2 {
		t.Errorf("run.sh exited %d, want 2 (incomplete)", r.code)
	}
	for _, want := range []string{
		"MISSING: compute-sanitizer not found",
		"MISSING: memcheck, racecheck, synccheck and initcheck NOT RUN",
		"RESULT: INCOMPLETE",
		"   tests: PASS", "   bench: PASS",
	} {
		if !strings.Contains(r.summary, want) {
			t.Errorf("summary lacks %q:\n%s", want, r.summary)
		}
	}
	for _, c := range r.calls {
		if strings.HasPrefix(c, "sanitizer ") {
			t.Errorf("a sanitizer ran: %s", c)
		}
	}
}

func TestGPURunReportsFailingTool(t *testing.T) {
	r := runBundle(t, []string{"usr/local/cuda/bin/compute-sanitizer"}, "FAKE_FAIL_TOOL=racecheck")
	if r.code != 1 {
		t.Errorf("run.sh exited %d, want 1 (a step failed)", r.code)
	}
	for _, want := range []string{"   racecheck: FAIL (exit 3", "   memcheck: PASS", "   synccheck: PASS", "   initcheck: PASS", "RESULT: FAIL"} {
		if !strings.Contains(r.summary, want) {
			t.Errorf("summary lacks %q:\n%s", want, r.summary)
		}
	}
}

func TestGPURunKeepsToBudget(t *testing.T) {
	t0 := time.Now()
	r := runBundle(t, []string{"usr/local/cuda/bin/compute-sanitizer"},
		"LORA_BUNDLE_SECONDS=4", "FAKE_SLOW=lora.test", "FAKE_SLEEP=30")
	if d := time.Since(t0); d > 15*time.Second {
		t.Errorf("a bundle with a budget of 4 s ran %v", d)
	}
	if r.code != 1 {
		t.Errorf("run.sh exited %d, want 1 (a step timed out)", r.code)
	}
	for _, want := range []string{"   results: TIMEOUT", "== tests: NOT RUN: the bundle's 4 s budget is spent",
		"== memcheck: NOT RUN: the bundle's 4 s budget is spent", "RESULT: FAIL"} {
		if !strings.Contains(r.summary, want) {
			t.Errorf("summary lacks %q:\n%s", want, r.summary)
		}
	}
}

// TestGPURunResultsFirst checks that the result tests run before every
// other step, lora.test's then cuda.test's, that the suite's own run skips
// them, and that their FAMILY lines are in the summary, in order, before
// the next step.
func TestGPURunResultsFirst(t *testing.T) {
	r := runBundle(t, []string{"usr/local/cuda/bin/compute-sanitizer"})
	if r.code != 0 {
		t.Errorf("run.sh exited %d, want 0; summary:\n%s", r.code, r.summary)
	}
	if len(r.calls) < 4 || !strings.HasPrefix(r.calls[0], "lora.test ") || !strings.Contains(r.calls[0], "TestResultFamilies") ||
		!strings.HasPrefix(r.calls[1], "cuda.test ") || !strings.Contains(r.calls[1], "TestForwardMMA") {
		t.Fatalf("the first calls are not the result tests:\n%s", strings.Join(r.calls, "\n"))
	}
	for _, name := range []string{"TestForwardHalfPlannedVariants", "TestNF4TiledPlannedVariants", "TestHalfGradX"} {
		if !strings.Contains(r.calls[0], name) {
			t.Errorf("the result tests %q do not name %s", r.calls[0], name)
		}
	}
	suite := 0
	for _, c := range r.calls {
		if strings.HasPrefix(c, "lora.test -test.v -test.count=1 -test.skip ") {
			suite++
			if !strings.Contains(c, "TestResultFamilies") {
				t.Errorf("the suite's run %q does not skip the result tests", c)
			}
		}
	}
	if suite != 1 {
		t.Errorf("the suite ran %d times without the result tests, want 1:\n%s", suite, strings.Join(r.calls, "\n"))
	}
	want := []string{
		"   results: PASS",
		"   results-mma: PASS",
		"   FAMILY lora_forward_small: PASS (5 shapes)\n   FAMILY lora_forward_mma_bf16: PASS (2 shapes)\n" +
			"   FAMILY lora_forward_mma_f16 (direct launches): PASS (19 shapes)\n== cuda-tests",
		"RESULT: PASS",
	}
	at := 0
	for _, w := range want {
		i := strings.Index(r.summary[at:], w)
		if i < 0 {
			t.Fatalf("summary lacks %q after byte %d:\n%s", w, at, r.summary)
		}
		at += i + len(w)
	}
}

// TestGPURunReportsFailingFamily checks that a family's FAIL is in the
// summary and fails the run.
func TestGPURunReportsFailingFamily(t *testing.T) {
	r := runBundle(t, []string{"usr/local/cuda/bin/compute-sanitizer"}, "FAKE_MMA=FAIL (1 of 2 shapes)")
	if r.code != 1 {
		t.Errorf("run.sh exited %d, want 1 (a step failed)", r.code)
	}
	for _, want := range []string{"   results: FAIL (exit 1", "   FAMILY lora_forward_mma_bf16: FAIL (1 of 2 shapes)",
		"   FAMILY lora_forward_small: PASS (5 shapes)", "   tests: PASS", "RESULT: FAIL"} {
		if !strings.Contains(r.summary, want) {
			t.Errorf("summary lacks %q:\n%s", want, r.summary)
		}
	}
}

// TestGPURunReportsNoFamilies checks that result tests that print no
// FAMILY verdict fail the run, though they exit 0.
func TestGPURunReportsNoFamilies(t *testing.T) {
	r := runBundle(t, []string{"usr/local/cuda/bin/compute-sanitizer"}, "FAKE_NO_FAMILIES=1")
	if r.code != 1 {
		t.Errorf("run.sh exited %d, want 1", r.code)
	}
	for _, want := range []string{"   results: PASS", "   FAMILY verdicts: none in", "RESULT: FAIL"} {
		if !strings.Contains(r.summary, want) {
			t.Errorf("summary lacks %q:\n%s", want, r.summary)
		}
	}
}
