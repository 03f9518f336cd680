package peft

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	"github.com/golora/lora/internal/natsort"
)

// The suffixes of LoRA tensor names, after the module name.
const (
	suffixA    = ".lora_A.weight"
	suffixB    = ".lora_B.weight"
	suffixEmbA = ".lora_embedding_A"
	suffixEmbB = ".lora_embedding_B"
)

// isLoRAName reports whether a component of the dotted name starts with
// "lora_", as every LoRA parameter of PEFT does.
func isLoRAName(name string) bool {
	for c := range strings.SplitSeq(name, ".") {
		if strings.HasPrefix(c, "lora_") {
			return true
		}
	}
	return false
}

// closest returns the names of up to n modules closest to name.
func closest(mods []*Module, name string, n int) []string {
	type cand struct {
		name         string
		dist, suffix int
	}
	var cs []cand
	for _, m := range mods {
		if m == nil {
			continue
		}
		cs = append(cs, cand{m.Name, editDistance(tail(m.Name), tail(name)), sharedSuffix(m.Name, name)})
	}
	slices.SortFunc(cs, func(x, y cand) int {
		return cmp.Or(cmp.Compare(x.dist, y.dist), cmp.Compare(y.suffix, x.suffix), natsort.Compare(x.name, y.name))
	})
	var out []string
	for i := 0; i < len(cs) && i < n; i++ {
		out = append(out, cs[i].name)
	}
	return out
}

// tail returns the last 128 bytes of s, which bound the cost of
// editDistance on hostile names.
func tail(s string) string { return s[max(0, len(s)-128):] }

// editDistance returns the Levenshtein distance between a and b, in bytes.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			c := prev[j-1]
			if a[i-1] != b[j-1] {
				c = 1 + min(c, prev[j], cur[j-1])
			}
			cur[j] = c
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// sharedSuffix returns the length in bytes of the longest suffix of both a
// and b.
func sharedSuffix(a, b string) int {
	n := 0
	for n < len(a) && n < len(b) && a[len(a)-1-n] == b[len(b)-1-n] {
		n++
	}
	return n
}

// targetsNote formats target_modules for an error message.
func targetsNote(c *Config) string {
	if c.TargetModulesRegex != "" {
		return quote(c.TargetModulesRegex)
	}
	return "[" + namesNote(c.TargetModules, 8) + "]"
}

// restrictNote names the fields that narrow target_modules, when set.
func restrictNote(c *Config) string {
	var parts []string
	if c.ExcludeModulesRegex != "" || len(c.ExcludeModules) > 0 {
		parts = append(parts, "exclude_modules")
	}
	if len(c.LayersToTransform) > 0 {
		parts = append(parts, "layers_to_transform")
	}
	if len(parts) == 0 {
		return ""
	}
	return " (with " + strings.Join(parts, " and ") + ")"
}

// namesNote quotes up to limit names, and says how many more there are.
func namesNote(names []string, limit int) string {
	var b strings.Builder
	for i, n := range names {
		if i == limit {
			fmt.Fprintf(&b, ", and %d more", len(names)-limit)
			break
		}
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(quote(n))
	}
	return b.String()
}
