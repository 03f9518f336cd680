package cpu

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

func TestParseLevel(t *testing.T) {
	for _, c := range []struct {
		s    string
		want Level
		ok   bool
	}{
		{"generic", Generic, true}, {"avx2", AVX2, true}, {"avx512", AVX512, true},
		{" AVX2 ", AVX2, true}, {"AVX512", AVX512, true},
		{"avx512bf16", AVX512BF16, true}, {"amx", AMX, true}, {"AMX", AMX, true},
		{"", Generic, false}, {"sse4", Generic, false}, {"avx-512", Generic, false},
	} {
		got, err := ParseLevel(c.s)
		if (err == nil) != c.ok || (c.ok && got != c.want) {
			t.Errorf("ParseLevel(%q) = %v, %v; want %v, ok %v", c.s, got, err, c.want, c.ok)
		}
		if c.ok && got.String() != strings.ToLower(strings.TrimSpace(c.s)) {
			t.Errorf("%v.String() = %q, want %q", got, got.String(), strings.ToLower(strings.TrimSpace(c.s)))
		}
	}
	if s := Level(7).String(); s != "Level(7)" {
		t.Errorf("Level(7).String() = %q", s)
	}
}

func TestChooseLevel(t *testing.T) {
	for _, c := range []struct {
		env      string
		top      Level
		want     Level
		noteWith string // "" when no note is wanted
	}{
		{"", AVX512, AVX512, ""},
		{"  ", AVX2, AVX2, ""},
		{"generic", AVX512, Generic, ""},
		{"avx2", AVX512, AVX2, ""},
		{"avx512", AVX512, AVX512, ""},
		{"avx512", AVX2, AVX2, "highest level is avx2"},
		{"avx512bf16", AMX, AVX512BF16, ""},
		{"amx", AMX, AMX, ""},
		{"amx", AVX512BF16, AVX512BF16, "highest level is avx512bf16"},
		{"avx512bf16", AVX512, AVX512, "highest level is avx512"},
		{"avx2", Generic, Generic, "highest level is generic"},
		{"fast", AVX512, AVX512, `unknown CPU level "fast"`},
	} {
		got, note := chooseLevel(c.env, c.top)
		if got != c.want || (c.noteWith == "") != (note == "") || !strings.Contains(note, c.noteWith) {
			t.Errorf("chooseLevel(%q, %v) = %v, %q; want %v and a note with %q", c.env, c.top, got, note, c.want, c.noteWith)
		}
	}
}

// TestLevelFlags checks the kernels' flags at the level the process runs
// at: nothing above it is used.
func TestLevelFlags(t *testing.T) {
	l := CurrentLevel()
	if l > MachineLevel() {
		t.Fatalf("running at %v above the machine's %v", l, MachineLevel())
	}
	if env := os.Getenv(levelEnv); env != "" {
		if want, err := ParseLevel(env); err == nil && min(want, MachineLevel()) != l {
			t.Errorf("%s=%s: running at %v, want %v", levelEnv, env, l, min(want, MachineLevel()))
		}
	}
	if l < AVX2 && (useFMA || useBF16FMA || useF16FMA || useNF4FMA || halfAVX2) {
		t.Errorf("level %v with an AVX2 kernel on", l)
	}
	if l < AVX512 && useNF4AVX512 {
		t.Errorf("level %v with an AVX-512 kernel on", l)
	}
	if l >= AVX2 && !portableKernels && !(useFMA && useBF16FMA && useNF4FMA && halfAVX2) {
		t.Errorf("level %v with an AVX2 kernel off", l)
	}
	if l >= AVX512 && !portableKernels && !useNF4AVX512 {
		t.Errorf("level %v with the AVX-512 kernel off", l)
	}
	if l < AVX512BF16 && useBF16DP || l < AMX && useAMX {
		t.Errorf("level %v with a bf16 kernel above it on (VDPBF16PS %v, AMX %v)", l, useBF16DP, useAMX)
	}
	if l >= AVX512BF16 && !portableKernels && !useBF16DP {
		t.Errorf("level %v with VDPBF16PS off", l)
	}
	if l >= AMX && !portableKernels && !useAMX {
		t.Errorf("level %v with AMX off", l)
	}
	t.Logf("level %v (machine %v): VDPBF16PS %v, AMX %v", l, MachineLevel(), useBF16DP, useAMX)
}

// TestLevels runs this package's tests again at every level below the
// machine's, each in a process of its own with LORA_CPU naming it, so that
// every kernel and driver path this processor can take is tested on every
// run.
func TestLevels(t *testing.T) {
	if os.Getenv(levelEnv) != "" {
		t.Skipf("%s=%s: this process is one of the runs TestLevels starts", levelEnv, os.Getenv(levelEnv))
	}
	if testing.Short() {
		t.Skip("-short: the other levels are not run")
	}
	run := "-test.run=."
	if raceBuild {
		// Under the race detector, only the tests of the splits among
		// goroutines: what the detector can see at a level is its Go
		// drivers sharing work, and the whole suite at every level runs in
		// the builds without it (make test-emu runs this package so).
		run = "-test.run=Split|Shares|TestLevelFlags"
	}
	for l := Generic; l < MachineLevel(); l++ {
		t.Run(l.String(), func(t *testing.T) {
			cmd := exec.Command(os.Args[0], "-test.count=1", "-test.v", run, "-test.skip=^TestLevels$")
			cmd.Env = append(os.Environ(), levelEnv+"="+l.String())
			out, err := cmd.CombinedOutput()
			if err != nil || !strings.Contains(string(out), "--- PASS: TestLevelFlags") || strings.Contains(string(out), "--- FAIL") {
				t.Errorf("the tests at %s=%v: %v\n%s", levelEnv, l, err, out)
			}
		})
	}
}
