//go:build !linux

package main

// swapPaths would swap the directories a and b in one rename; where that is
// not available it returns errNoSwap.
func swapPaths(a, b string) error { return errNoSwap }
