//go:build openblas

package cpu

// With -tags openblas the products run on OpenBLAS, which runs each call on
// threads of its own.
import _ "github.com/golora/lora/internal/openblas"

func init() { blasThreaded = true }
