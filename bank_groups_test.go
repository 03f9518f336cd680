package lora

import (
	"slices"
	"testing"
)

// TestBankGroups checks the counting sort: groups in order of first
// appearance, rows in their order within each group, -1 left out.
func TestBankGroups(t *testing.T) {
	ids := []int32{5, -1, 2, 5, 5, 0, 2, -1, 0}
	perm, groups := bankGroups(ids)
	if want := []int32{0, 3, 4, 2, 6, 5, 8}; !slices.Equal(perm, want) {
		t.Errorf("perm = %v, want %v", perm, want)
	}
	want := []bankGroup{{5, 0, 3}, {2, 3, 5}, {0, 5, 7}}
	if !slices.Equal(groups, want) {
		t.Errorf("groups = %v, want %v", groups, want)
	}
	if perm, groups := bankGroups([]int32{-1, -1}); len(perm) != 0 || len(groups) != 0 {
		t.Errorf("all -1: perm %v, groups %v", perm, groups)
	}
}
