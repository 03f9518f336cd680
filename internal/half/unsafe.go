package half

import "unsafe"

func unsafeSlice[T any](p *T, n int) []T { return unsafe.Slice(p, n) }
