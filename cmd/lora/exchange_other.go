//go:build !linux

package main

// exchange would swap the directories a and b in one rename; where that is
// not available it returns errNoExchange.
func exchange(a, b string) error { return errNoExchange }
