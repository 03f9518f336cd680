//go:build cuda

package kernels

import _ "embed"

// Fatbin is lora.fatbin: every kernel as SASS for sm_70, sm_75, sm_80,
// sm_86, sm_89 and sm_90, and as PTX for compute_90, which the driver
// compiles for newer GPUs.
//
//go:embed lora.fatbin
var Fatbin string
