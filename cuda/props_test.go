package cuda

import "testing"

// TestPropsTables checks the per-architecture tables against the figures of
// NVIDIA's documentation for the devices the planner is tested on.
func TestPropsTables(t *testing.T) {
	for _, c := range []struct {
		name         string
		major, minor int
		blocks, fp32 int
	}{
		{"V100", 7, 0, 32, 64},
		{"T4", 7, 5, 16, 64},
		{"A100", 8, 0, 32, 64},
		{"A10", 8, 6, 16, 128},
		{"L4", 8, 9, 24, 128},
		{"H100", 9, 0, 32, 128},
		{"Kepler", 3, 5, 0, 0},
	} {
		if got := blocksPerSM(c.major, c.minor); got != c.blocks {
			t.Errorf("%s: blocksPerSM(%d, %d) = %d, want %d", c.name, c.major, c.minor, got, c.blocks)
		}
		if got := fp32PerSM(c.major, c.minor); got != c.fp32 {
			t.Errorf("%s: fp32PerSM(%d, %d) = %d, want %d", c.name, c.major, c.minor, got, c.fp32)
		}
	}
	// The H100 SXM: 132 SMs at 1.98 GHz boost, 128 lanes: 67 TFLOP/s.
	if f := 2 * float64(fp32PerSM(9, 0)) * 132 * 1.98e9; f < 66e12 || f > 68e12 {
		t.Errorf("H100 fp32 rate %.3g, want about 67e12", f)
	}
}
