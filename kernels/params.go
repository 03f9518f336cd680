package kernels

// Params is the number of parameters of every kernel of lora.fatbin, by
// name, as their signatures in lora.cu declare them. A launch whose packed
// arguments do not match is refused before it reaches the driver, which
// would read past them; the emulated build checks this table against the
// signatures the compiler sees.
var Params = map[string]int{
	"lora_shrink":         7,
	"lora_forward_small":  8,
	"lora_forward_m16":    8,
	"lora_forward_m32":    8,
	"lora_forward_m64":    8,
	"lora_forward_reduce": 8,
	"lora_forward_tiled":  9,
	"lora_merge":          7,
	"lora_merge_check":    8,
	"lora_absmax":         3,
	"lora_add_bias":       4,
	"lora_axpy":           4,
	"lora_convert":        5,
	"lora_grad_u":         7,
	"lora_grad_ab":        7,
	"lora_grad_x_small":   9,
	"lora_grad_x_tiled":   9,
	"lora_adamw":          13,
	"lora_sgd":            9,
	"lora_mse":            6,
	"lora_bank_shrink":    8,
	"lora_bank_expand":    8,
	"lora_bank_small":     15,
	"lora_bank_rowshrink": 12,

	"lora_shrink_f16":               7,
	"lora_shrink_bf16":              7,
	"lora_forward_small_f16":        8,
	"lora_forward_small_bf16":       8,
	"lora_forward_small_f16_xf16":   8,
	"lora_forward_small_bf16_xbf16": 8,
	"lora_forward_m16_f16":          8,
	"lora_forward_m16_bf16":         8,
	"lora_forward_m32_f16":          8,
	"lora_forward_m32_bf16":         8,
	"lora_forward_m64_f16":          8,
	"lora_forward_m64_bf16":         8,
	"lora_forward_reduce_f16":       8,
	"lora_forward_reduce_bf16":      8,
	"lora_forward_tiled_f16":        9,
	"lora_forward_tiled_bf16":       9,

	"lora_forward_mma_bf16": 9,
	"lora_forward_mma_f16":  9,

	"lora_merge_f16":         7,
	"lora_merge_bf16":        7,
	"lora_merge_check_f16":   8,
	"lora_merge_check_bf16":  8,
	"lora_absmax_f16":        3,
	"lora_absmax_bf16":       3,
	"lora_grad_x_small_f16":  9,
	"lora_grad_x_small_bf16": 9,
	"lora_grad_x_tiled_f16":  9,
	"lora_grad_x_tiled_bf16": 9,
}
