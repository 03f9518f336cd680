//go:build cuda || cudaemu

package lora

import (
	"fmt"
	"math"
	"unsafe"

	"github.com/golora/lora/cuda"
	"github.com/golora/lora/internal/plan"
	"github.com/golora/lora/kernels"
)

// The GPU backend of Merge and Unmerge: the bound of W, of the adapter, the
// rank-r update and its exact check.

// finiteGrid is the grid of lora_absmax over count elements.
func finiteGrid(count int64) cuda.Dim3 {
	return cuda.Dim3{X: plan.AbsMaxBlocks(count), Y: 1, Z: 1}
}

// zeroWord returns dev.flag, set to zero in stream order. Called with dev
// held.
func zeroWord() (cuda.Ptr, error) {
	if dev.flag == 0 {
		p, err := cuda.Alloc(4)
		if err != nil {
			return 0, devErr(err)
		}
		dev.flag = p
	}
	if err := cuda.Memset32(dev.flag, 0, 1); err != nil {
		return 0, devErr(err)
	}
	return dev.flag, nil
}

// readWord waits for the queued work and returns dev.flag's value. Called
// with dev held.
func readWord() (uint32, error) {
	if err := cuda.CopyDtoH(unsafe.Pointer(&dev.flagv), dev.flag, 4); err != nil {
		return 0, devErr(err)
	}
	return dev.flagv, nil
}

// kernelOf returns the name of kernel's entry point for W's dtype: kernel
// itself for F32, kernel_f16 or kernel_bf16 for a W of 16-bit elements.
func kernelOf(kernel string, w *Matrix) string {
	if w.dt == F32 {
		return kernel
	}
	return kernel + "_" + w.dt.String()
}

// absMax returns max |m[i,j]|, or a non-finite value (NaN or +Inf) when m
// holds NaN or ±Inf: the bits of the largest magnitude, reduced on the
// device into one word and read back (this waits for the queued work). An
// F16 or BF16 m is reduced over its 16-bit elements; the result is exact.
func (gpuBackend) absMax(m *Matrix) (float32, error) {
	dev.Lock()
	defer dev.Unlock()
	word, err := zeroWord()
	if err != nil {
		return 0, err
	}
	count := int64(m.rows) * int64(m.cols)
	var k launchArgs
	k.mat(m).int64(count).ptr(word)
	if err := launch(kernelOf("lora_absmax", m), finiteGrid(count), cuda.Dim3{X: kernels.FiniteThreads, Y: 1, Z: 1}, &k); err != nil {
		return 0, err
	}
	v, err := readWord()
	if err != nil {
		return 0, err
	}
	return math.Float32frombits(v), nil
}

// adapterBound returns maxA = max |A[k,j]| and maxRowB = max_i Σ_k |B[i,k]|,
// summed in float64; either is non-finite when A or B holds NaN or ±Inf.
// A and B are small, r·(in+out) elements: they are read back to the host
// (which waits for the queued work).
func (gpuBackend) adapterBound(a, b *Matrix) (maxA, maxRowB float64, err error) {
	ha := make([]float32, a.rows*a.cols)
	if err := a.buf.read(ha); err != nil {
		return 0, 0, err
	}
	hb := make([]float32, b.rows*b.cols)
	if err := b.buf.read(hb); err != nil {
		return 0, 0, err
	}
	for _, v := range ha {
		av := math.Abs(float64(v))
		if av != av || math.IsInf(av, 0) {
			return av, 0, nil
		}
		maxA = max(maxA, av)
	}
	r := b.cols
	for i := range b.rows {
		var s float64
		for _, v := range hb[i*r : (i+1)*r] {
			s += math.Abs(float64(v))
		}
		if s != s || math.IsInf(s, 0) {
			return maxA, s, nil
		}
		maxRowB = max(maxRowB, s)
	}
	return maxA, maxRowB, nil
}

// mergeGrid checks W's shape against the grid limit of lora_merge and
// returns the launch geometry of lora_merge and lora_merge_check.
func mergeGrid(w *Matrix) (grid, block cuda.Dim3, err error) {
	out, in := w.rows, w.cols
	if gy := ceilDiv(out, kernels.MergeTileOut); gy > 65535 {
		return grid, block, fmt.Errorf("out = %d above the GPU's grid limit: %w", out, ErrShape)
	}
	l := plan.Merge(planDev(), out, in, 0)
	return dim(l.Grid), cuda.Dim3{X: l.Kernel.Threads, Y: 1, Z: 1}, nil
}

// rankUpdate enqueues W += c·B·A in place, each element of W read and
// written once. An F16 or BF16 W gets each element formed in float32 as for
// F32 (the widened element plus the same float32 update) and rounded once to
// its dtype, to nearest even.
func (gpuBackend) rankUpdate(w, a, b *Matrix, c float32) error {
	grid, block, err := mergeGrid(w)
	if err != nil {
		return err
	}
	var k launchArgs
	k.mat(w).mat(a).mat(b).int32(w.rows).int32(w.cols).int32(a.rows).float(c)
	return launch(kernelOf("lora_merge", w), grid, block, &k)
}

// rankFinite reports whether every element of W + c·B·A, computed exactly
// as rankUpdate computes it, is finite. W is not modified: lora_merge_check
// is lora_merge with each store to W replaced by a test of the value, and
// its flag is read back (this waits for the queued work). For an F16 or
// BF16 W, finite means finite after rounding to W's dtype: a sum of 65520 or
// more is +Inf in F16.
func (gpuBackend) rankFinite(w, a, b *Matrix, c float32) (bool, error) {
	grid, block, err := mergeGrid(w)
	if err != nil {
		return false, err
	}
	dev.Lock()
	defer dev.Unlock()
	flag, err := zeroWord()
	if err != nil {
		return false, err
	}
	var k launchArgs
	k.mat(w).mat(a).mat(b).int32(w.rows).int32(w.cols).int32(a.rows).float(c).ptr(flag)
	if err := launch(kernelOf("lora_merge_check", w), grid, block, &k); err != nil {
		return false, err
	}
	v, err := readWord()
	return v == 0, err
}
