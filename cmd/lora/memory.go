package main

import "github.com/golora/lora/peft"

// Steps of a copy or conversion and blocks of a merge, so that a large
// tensor does not need a buffer of its size, and the data written before a
// flush to disk starts (variables for the tests).
var (
	copyStep        int64 = 8 << 20  // bytes
	convertStep     int64 = 1 << 20  // elements
	mergeBlockElems int64 = 2 << 20  // elements of a block of rows, at least the rank's rows
	flushEvery      int64 = 64 << 20 // bytes
)

// peakMiB is the bound on merge's memory that its usage states, beyond
// twice the adapter's weights as float32 (the adapter as loaded, and the
// copies its modules' layers are built from): TestMergePeakMemory measures
// it. It covers the
// producer's scratch (a block's values, and its bytes in the input dtype,
// up to 8 bytes an element), the two buffers in flight, the cached block
// matrices, and the Go runtime's own.
const peakMiB = 160

// peakHalfMiB is peakMiB for a model whose merged weights are F16 or BF16
// kept in their dtype: they merge through a W of their dtype, with no
// float32 copy, and the blocks take a quarter of the memory.
const peakHalfMiB = 80

// mergeMemory returns the bytes a merge of a rows×cols weight of rank r,
// of dtype in written as out, needs beyond the adapter: the block matrices
// (A' and a block of B' as float32, and a block of W) and two output
// buffers; and for a weight merged in float32, a block's values as float32
// and as bytes of the input (up to F64). An F16 or BF16 weight kept in its
// dtype merges through a W of that dtype, read into and written from the
// output buffers: 6 bytes an element of a block instead of 24.
func mergeMemory(rows, cols, r int, in, out peft.DType) int64 {
	h := blockRows(rows, cols, r)
	blk := int64(h) * int64(cols)
	ab := int64(r) * (int64(cols) + int64(h)) * 4
	if halfMerge(in, out) {
		return blk*(2+2*2) + ab
	}
	return blk*(4+8+2*4+4) + ab
}

// blockRows returns the rows of the blocks in which a rows×cols weight of
// rank r merges: mergeBlockElems elements, at least r rows (lora.Layer
// wants rank ≤ rows) and at most rows.
func blockRows(rows, cols, r int) int {
	h := int(mergeBlockElems / int64(max(cols, 1)))
	return min(max(h, r, 1), rows)
}
