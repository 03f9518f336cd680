//go:build (!amd64 || purego) && !cuda && !cudaemu

package lora

func gemv4F32(y, x, w *float32, n, ldw int) { panic("unreachable") }
