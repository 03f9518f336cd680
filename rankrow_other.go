//go:build (!amd64 || purego) && !cuda && !cudaemu

package lora

// useFMA is false: this build has no assembly form of rankRow.
const useFMA = false

// rankRow computes dst[j] += Σₖ coef[k]·a[k·lda+j] for j < len(dst), the sum
// accumulated from zero in k order and then added to dst, so that negating
// coef subtracts bit for bit what it added.
func rankRow(dst, a, coef []float32, lda int) { rankRowGo(dst, a, coef, lda) }
