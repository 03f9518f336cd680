//go:build openblas && !cuda && !cudaemu

package lora

// With -tags openblas the CPU backend computes its products with OpenBLAS,
// which runs each product on its own threads.
import _ "github.com/golora/lora/internal/openblas"

func init() { blasThreaded = true }
