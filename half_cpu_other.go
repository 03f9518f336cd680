//go:build (!amd64 || purego) && !cuda && !cudaemu

package lora

// Without the amd64 assembly a half-precision W takes the portable loops.
const (
	useBF16FMA = false
	useF16FMA  = false
	halfAVX2   = false
)

func gemv4BF16(y, x *float32, w *uint16, n, ldw int)           { panic("unreachable") }
func gemv4F16(y, x *float32, w *uint16, n, ldw int)            { panic("unreachable") }
func rankRowBF16(dst *uint16, a, coef *float32, n, r, lda int) { panic("unreachable") }
func rankRowF16(dst *uint16, a, coef *float32, n, r, lda int)  { panic("unreachable") }
func rankRowFromBF16(dst *float32, a *uint16, coef *float32, n, r, lda int) {
	panic("unreachable")
}
func rankRowFromF16(dst *float32, a *uint16, coef *float32, n, r, lda int) { panic("unreachable") }
func maxMag16(src *uint16, n int) uint16                                   { panic("unreachable") }
