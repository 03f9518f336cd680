//go:build !linux

package sysmem

func physical() uint64 { return 0 }
