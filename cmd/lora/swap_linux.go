package main

import (
	"errors"

	"golang.org/x/sys/unix"
)

// swapPaths swaps the directories a and b in one rename (renameat2 with
// RENAME_EXCHANGE). It returns errNoSwap where the kernel or the file
// system cannot.
func swapPaths(a, b string) error {
	err := unix.Renameat2(unix.AT_FDCWD, a, unix.AT_FDCWD, b, unix.RENAME_EXCHANGE)
	if errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EINVAL) || errors.Is(err, unix.EOPNOTSUPP) {
		return errNoSwap
	}
	return err
}
