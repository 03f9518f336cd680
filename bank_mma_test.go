//go:build cudaemu

package lora

import (
	"bufio"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/golora/lora/internal/plan"
	"github.com/golora/lora/internal/reftest"
)

// TestBankPrefillTensorCores runs a Bank prefill (n above the decode
// kernels' 16 rows) over a BF16 W with a BF16 x, planned for a device of
// sm_80 or newer on which the planner runs x·Wᵀ on the tensor cores: the
// base product must be lora_forward_mma_bf16 on x as it is stored, the
// Bank's shrink its own kernel on x widened, and y must match the float64
// reference. The kernels that ran are those the emulator traces
// (LORA_EMU_TRACE), in a child process, whose trace holds only this test's
// launches.
func TestBankPrefillTensorCores(t *testing.T) {
	const n, in, out, maxRank = 130, 72, 150, 5
	_, huge, tiny := plannedDevices(t)
	ty := plan.Types{W: plan.BF16, X: plan.BF16, Y: plan.F32}
	var dev plan.Device
	var f plan.Forward
	for _, d := range []plan.Device{plan.H200, tiny, huge} {
		if f = plan.ForwardPlanOf(d, n, in, out, 0, ty); f.MMA {
			dev = d
			break
		}
	}
	if !f.MMA || dev.Arch < 80 {
		t.Fatalf("no planned device of sm_80 or newer runs a %d×%d by %d×%d BF16 product on the tensor cores", n, in, out, in)
	}
	if os.Getenv("LORA_TEST_BANK_MMA") == "" {
		trace := filepath.Join(t.TempDir(), "trace")
		reftest.RunChild(t, "LORA_TEST_BANK_MMA=1", "LORA_EMU_TRACE="+trace)
		file, err := os.Open(trace)
		if err != nil {
			t.Fatal(err)
		}
		defer file.Close()
		ran := map[string]bool{}
		sc := bufio.NewScanner(file)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			kernel, _, _ := strings.Cut(sc.Text(), " ")
			ran[kernel] = true
		}
		if err := sc.Err(); err != nil {
			t.Fatal(err)
		}
		for _, k := range []string{f.Main.Kernel.Name, "lora_bank_shrink", "lora_bank_expand"} {
			if !ran[k] {
				t.Errorf("the prefill did not run %s; it ran %v", k, ran)
			}
		}
		if f.Main.Kernel.Name != "lora_forward_mma_bf16" {
			t.Errorf("the planned base product is %s, want lora_forward_mma_bf16", f.Main.Kernel.Name)
		}
		return
	}
	planDev = func() plan.Device { return dev }
	rng := rand.New(rand.NewPCG(205, 206))
	w, wv := bankW(t, rng, BF16, out, in)
	bk, err := NewBank(w, BankConfig{MaxRank: maxRank, Capacity: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer bk.Free()
	ads := map[int32]*bankTestAdapter{}
	var held []int32
	for _, r := range []int{1, 3, maxRank} {
		id, ad := bankAddOf(t, rng, bk, BF16, r)
		ads[id] = ad
		held = append(held, id)
	}
	x, xv := dtOperand(t, BF16, n, in, reftest.Normal(rng, n*in, 1))
	y := dtOutput(t, F32, n, out)
	ids := bankMixedIDs(n, held)
	if err := bk.Forward(y, x, ids); err != nil {
		t.Fatalf("Forward: %v", err)
	}
	want, mag := bankWant(xv, wv, n, in, out, ids, ads)
	// float32 sums of in products (the tensor cores' as the emulator
	// models them: truncated, not rounded, within the same order) plus the
	// adapter term of r products and its scale.
	reftest.Close(t, "y", dtRead(t, y), want, mag, reftest.Gamma(in+maxRank+40))
}
