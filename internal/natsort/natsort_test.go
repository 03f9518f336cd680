package natsort

import (
	"cmp"
	"math/rand/v2"
	"slices"
	"testing"
)

func TestCompare(t *testing.T) {
	for _, c := range []struct {
		a, b string
		want int
	}{
		{"", "", 0},
		{"", "a", -1},
		{"", "0", -1},
		{"a", "a", 0},
		{"a", "b", -1},
		{"ab", "a", 1},
		// Digit runs compare by value.
		{"h.2.mlp", "h.10.mlp", -1},
		{"h.10", "h.9", 1},
		{"h.10", "h.10", 0},
		{"a9b", "a10a", -1},
		{"x1y2", "x1y10", -1},
		{"123456789012345678901234567890", "123456789012345678901234567891", -1},
		{"99999999999999999999999999999", "100000000000000000000000000000", -1},
		// Leading zeros: the value first, then fewer zeros first.
		{"h.1.w", "h.01.w", -1},
		{"h.01.w", "h.2.w", -1},
		{"007", "7", 1},
		{"0", "00", -1},
		{"00", "00", 0},
		{"010", "9", 1},
		// Equal values of different lengths decide only when nothing else
		// does.
		{"a01b", "a1c", -1},
		{"a1b", "a01c", -1},
		{"a01", "a1b", -1},
		{"a1.01", "a01.1", -1},
		{"a01.1", "a1.01", 1},
		// A digit against another byte compares as bytes.
		{"a1", "a.", 1},
		{"a1", "a_", -1},
		{"a", "a1", -1},
		// Non-ASCII: bytes, so code points; other scripts' digits are not
		// digits.
		{"é", "e", 1},
		{"h.é.2", "h.é.10", -1},
		{"日本2", "日本10", -1},
		{"a٢", "a١", 1},
		{"a١٠", "a٢", -1},
		{"a\xff", "a1", 1},
	} {
		if got := Compare(c.a, c.b); got != c.want {
			t.Errorf("Compare(%q, %q) = %d, want %d", c.a, c.b, got, c.want)
		}
		if got := Compare(c.b, c.a); got != -c.want {
			t.Errorf("Compare(%q, %q) = %d, want %d", c.b, c.a, got, -c.want)
		}
	}
}

func TestSort(t *testing.T) {
	want := []string{
		"", "a", "h.1.w", "h.01.w", "h.001.w", "h.2.w", "h.10.w", "h.11.w", "h.100.w",
		"lm_head.weight", "transformer.h.2.attn", "transformer.h.10.attn", "transformer.h.10.mlp",
	}
	r := rand.New(rand.NewPCG(1, 2))
	for range 20 {
		got := slices.Clone(want)
		r.Shuffle(len(got), func(i, j int) { got[i], got[j] = got[j], got[i] })
		slices.SortFunc(got, Compare)
		if !slices.Equal(got, want) {
			t.Fatalf("sorted %q, want %q", got, want)
		}
	}
}

// TestTotalOrder checks on short strings of a few bytes that Compare is
// antisymmetric, transitive and 0 only for equal strings.
func TestTotalOrder(t *testing.T) {
	alphabet := []string{"", "0", "1", "2", "9", "a", ".", "é"}
	var words []string
	for _, x := range alphabet {
		for _, y := range alphabet {
			for _, z := range alphabet {
				words = append(words, x+y+z)
			}
		}
	}
	slices.Sort(words)
	words = slices.Compact(words)
	slices.SortFunc(words, Compare)
	for i := 1; i < len(words); i++ {
		if Compare(words[i-1], words[i]) >= 0 {
			t.Fatalf("Compare(%q, %q) = %d after sorting", words[i-1], words[i], Compare(words[i-1], words[i]))
		}
	}
	// In a sorted list every earlier word is less: checks transitivity.
	for i := range words {
		for j := range words {
			if got, want := Compare(words[i], words[j]), cmp.Compare(i, j); got != want {
				t.Fatalf("Compare(%q, %q) = %d, want %d", words[i], words[j], got, want)
			}
		}
	}
}
