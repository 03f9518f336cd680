package cpu

import (
	"fmt"
	"os"
	"strings"
)

// Level is a set of instructions the kernels may use. The kernels run at
// the highest level the processor has, or at a lower one that the
// environment variable LORA_CPU names:
//
//	LORA_CPU=generic     the portable loops, no assembly (as -tags purego)
//	LORA_CPU=avx2        the AVX2, FMA and F16C kernels, not the AVX-512 ones
//	LORA_CPU=avx512      and the AVX-512 (F) ones; no bf16 dot-product instruction
//	LORA_CPU=avx512bf16  and VDPBF16PS (AVX512_BF16) for a BF16 W times bf16 x
//	LORA_CPU=amx         TDPBF16PS (AMX) in its place: every kernel (the default)
//
// LORA_CPU is read once, when the program starts. A level above what the
// processor has cannot be forced: the processor's own is used. An unknown
// value is ignored (the processor's level is used) and LevelNote says so.
// At level amx, the AMX tiles are asked of the operating system when the
// program starts; where it refuses them the level is avx512bf16, and
// LevelNote says so. The numerics do not depend on the level: every level
// computes the same products of the same values and accumulates in
// float32; only the order of the float32 sums differs, as it does between
// splits among goroutines. The one exception is TDPBF16PS (level amx),
// which rounds its sums its own way, within the bound of a float32 sum
// (gemm_bf16.go; README's contract).
type Level int

// The levels, lowest first.
const (
	Generic    Level = iota // portable Go loops
	AVX2                    // AVX2 and FMA (F16C for an F16 operand)
	AVX512                  // AVX2's kernels and the AVX-512 (F) ones
	AVX512BF16              // and VDPBF16PS (AVX512_BF16) for the bf16 product
	AMX                     // and TDPBF16PS (AMX-TILE, AMX-BF16) in its place
)

var levelNames = [...]string{Generic: "generic", AVX2: "avx2", AVX512: "avx512", AVX512BF16: "avx512bf16", AMX: "amx"}

// String returns the level's name as LORA_CPU takes it.
func (l Level) String() string {
	if l < Generic || l > AMX {
		return fmt.Sprintf("Level(%d)", int(l))
	}
	return levelNames[l]
}

// ParseLevel returns the level named s (case and surrounding space
// ignored).
func ParseLevel(s string) (Level, error) {
	t := strings.ToLower(strings.TrimSpace(s))
	for l, name := range levelNames {
		if t == name {
			return Level(l), nil
		}
	}
	return Generic, fmt.Errorf("unknown CPU level %q: want generic, avx2, avx512, avx512bf16 or amx", s)
}

// levelEnv is the environment variable that forces a lower level.
const levelEnv = "LORA_CPU"

var (
	level     Level  // the level the kernels run at
	levelNote string // why it is not what LORA_CPU asked for, if it is not
)

func init() {
	l, note := chooseLevel(os.Getenv(levelEnv), machineLevel())
	if got := setLevel(l); got != l {
		note = fmt.Sprintf("the operating system refused the AMX tiles; running at %v", got)
		l = got
	}
	level, levelNote = l, note
}

// chooseLevel returns the level to run at for the value env of LORA_CPU on
// a processor whose highest level is top, and a note when env was not
// followed.
func chooseLevel(env string, top Level) (Level, string) {
	if strings.TrimSpace(env) == "" {
		return top, ""
	}
	l, err := ParseLevel(env)
	if err != nil {
		return top, fmt.Sprintf("%s=%s ignored: %v; running at %v", levelEnv, env, err, top)
	}
	if l > top {
		return top, fmt.Sprintf("%s=%s ignored: the processor's highest level is %v", levelEnv, env, top)
	}
	return l, ""
}

// CurrentLevel returns the level the kernels run at.
func CurrentLevel() Level { return level }

// MachineLevel returns the highest level this processor and build have.
func MachineLevel() Level { return machineLevel() }

// LevelNote returns why the level differs from what LORA_CPU asked for, or
// "" when it does not.
func LevelNote() string { return levelNote }
