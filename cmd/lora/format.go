package main

import (
	"fmt"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// plural returns n and noun, with the noun in the plural unless n is 1.
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	if strings.HasSuffix(noun, "y") {
		return fmt.Sprintf("%d %sies", n, strings.TrimSuffix(noun, "y"))
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

// formatBytes returns n bytes in B, kB, MB or GB, with a few digits.
func formatBytes(n int64) string {
	switch {
	case n >= 1e9:
		return fmt.Sprintf("%.2f GB", float64(n)/1e9)
	case n >= 1e6:
		return fmt.Sprintf("%.1f MB", float64(n)/1e6)
	case n >= 1e3:
		return fmt.Sprintf("%.1f kB", float64(n)/1e3)
	}
	return fmt.Sprintf("%d B", n)
}

// quoteName returns a tensor's, module's or file's name s, read from a
// file, for a message: as it is when it is valid UTF-8 of printable
// characters other than spaces, quotes and backslashes, and quoted as by
// strconv.Quote otherwise, so that control characters (an escape sequence
// that clears the screen, a NUL) and invalid UTF-8 never reach the
// terminal raw, and a quoted name cannot pass for another.
func quoteName(s string) string {
	if s != "" && utf8.ValidString(s) && strings.IndexFunc(s, func(r rune) bool {
		return !unicode.IsPrint(r) || r == ' ' || r == '"' || r == '\\'
	}) < 0 {
		return s
	}
	return strconv.Quote(s)
}

// quoteNames returns names, each as quoteName gives it, joined by ", ".
func quoteNames(names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = quoteName(n)
	}
	return strings.Join(q, ", ")
}
