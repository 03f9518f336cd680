//go:build cuda || cudaemu

package kernels

// #include "tiles.h"
import "C"

// Launch constants, read from tiles.h so that the kernels and the Go code
// that sizes their grids cannot disagree. tiles.h documents the launch
// geometry of every kernel in terms of these.
const (
	WarpSize = C.LORA_WARP_SIZE

	ShrinkThreads = C.LORA_SHRINK_THREADS
	ShrinkRows    = C.LORA_SHRINK_ROWS
	ShrinkKs      = C.LORA_SHRINK_KS

	SmallNMax         = C.LORA_SMALL_N_MAX
	SmallThreads      = C.LORA_SMALL_THREADS
	SmallRowsPerBlock = C.LORA_SMALL_ROWS_PER_BLOCK
	SmallRowsPerWarp  = C.LORA_SMALL_ROWS_PER_WARP
	SmallSplitAlign   = C.LORA_SMALL_SPLIT_ALIGN

	MTileN        = C.LORA_MT_N
	MTileK        = C.LORA_MT_K
	MTileThreads  = C.LORA_MT_THREADS
	ReduceThreads = C.LORA_RED_THREADS

	TileM       = C.LORA_TILE_M
	TileN       = C.LORA_TILE_N
	TileThreads = C.LORA_TILE_THREADS
	TileK       = C.LORA_TILE_K

	MergeTileOut = C.LORA_MERGE_TILE_OUT
	MergeTileIn  = C.LORA_MERGE_TILE_IN
	MergeThreads = C.LORA_MERGE_THREADS

	FiniteThreads   = C.LORA_FINITE_THREADS
	FinitePerThread = C.LORA_FINITE_PER_THREAD
	FiniteMaxBlocks = C.LORA_FINITE_MAX_BLOCKS

	BiasThreads = C.LORA_BIAS_THREADS
	BiasBlocks  = C.LORA_BIAS_BLOCKS

	ConvertThreads   = C.LORA_CONVERT_THREADS
	ConvertMaxBlocks = C.LORA_CONVERT_MAX_BLOCKS

	AxpyThreads   = C.LORA_AXPY_THREADS
	AxpyMaxBlocks = C.LORA_AXPY_MAX_BLOCKS

	GradUThreads = C.LORA_GRADU_THREADS
	GradURows    = C.LORA_GRADU_ROWS
	GradUKs      = C.LORA_GRADU_KS

	GradABThreads = C.LORA_GRADAB_THREADS
	GradABTP      = C.LORA_GRADAB_TP
	GradABTR      = C.LORA_GRADAB_TR

	GradXSmallThreads = C.LORA_GXS_THREADS
	GradXSmallCols    = C.LORA_GXS_COLS

	OptThreads   = C.LORA_OPT_THREADS
	OptMaxBlocks = C.LORA_OPT_MAX_BLOCKS

	MSEThreads   = C.LORA_MSE_THREADS
	MSEPerThread = C.LORA_MSE_PER_THREAD
	MSEMaxBlocks = C.LORA_MSE_MAX_BLOCKS

	BankRows              = C.LORA_BANK_ROWS
	BankShrinkThreads     = C.LORA_BANK_SHRINK_THREADS
	BankShrinkKs          = C.LORA_BANK_SHRINK_KS
	BankExpandThreads     = C.LORA_BANK_EXPAND_THREADS
	BankNMax              = C.LORA_BANK_N_MAX
	BankSmallThreads      = C.LORA_BANK_SMALL_THREADS
	BankSmallRowsPerBlock = C.LORA_BANK_SMALL_ROWS_PER_BLOCK
)
