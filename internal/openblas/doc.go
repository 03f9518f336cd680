// Package openblas installs OpenBLAS (Debian's libopenblas-dev), through
// gonum's netlib binding, as gonum's float32 BLAS for the whole process, when
// built with -tags openblas; package lora imports it then. Without the tag
// the package is empty and the default build stays pure Go.
package openblas
