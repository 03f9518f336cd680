// Package natsort orders names as people read them: as text, but for runs
// of decimal digits, which compare by their value, so that "h.2.mlp" comes
// before "h.10.mlp".
package natsort

import (
	"cmp"
	"strings"
)

// Compare returns -1, 0 or +1 as a is before, equal to or after b in
// natural order. Bytes compare as bytes (so UTF-8 text compares by code
// point), and runs of the ASCII digits 0 to 9 by their value, whatever their
// length. Runs of equal value but different leading zeros, as "1" and "01",
// decide only when nothing else does: the first such run with fewer digits
// comes first, so that "h.1.w" < "h.01.w" < "h.2.w". Compare is a total order
// and returns 0 only when a == b.
func Compare(a, b string) int {
	zeros := 0 // the first difference in leading zeros, for a tie
	for a != "" && b != "" {
		da, db := digits(a), digits(b)
		if da > 0 && db > 0 {
			x, y := strings.TrimLeft(a[:da], "0"), strings.TrimLeft(b[:db], "0")
			if c := cmp.Or(cmp.Compare(len(x), len(y)), strings.Compare(x, y)); c != 0 {
				return c
			}
			if zeros == 0 {
				zeros = cmp.Compare(da, db)
			}
			a, b = a[da:], b[db:]
			continue
		}
		if a[0] != b[0] {
			return cmp.Compare(a[0], b[0])
		}
		a, b = a[1:], b[1:]
	}
	return cmp.Or(cmp.Compare(len(a), len(b)), zeros)
}

// digits returns the length of the run of ASCII digits that s starts with.
func digits(s string) int {
	i := 0
	for i < len(s) && '0' <= s[i] && s[i] <= '9' {
		i++
	}
	return i
}
