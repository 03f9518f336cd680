package cuda

// Props are the properties of the device that decide how a kernel launch
// fills it. A zero field is unknown (the emulator and the default build know
// none of them).
type Props struct {
	SMs          int     // streaming multiprocessors
	SharedPerSM  int     // bytes of shared memory the blocks of one SM may use
	ThreadsPerSM int     // resident threads per SM
	RegsPerSM    int     // 32-bit registers per SM
	BlocksPerSM  int     // resident blocks per SM
	FLOPs        float64 // nominal fp32 FLOP per second on the CUDA cores
	Arch         int     // compute capability as major·10 + minor: 80 for sm_80
}

// blocksPerSM returns the resident blocks per SM of compute capability
// major.minor, from the CUDA programming guide's table, or 0 if unknown.
func blocksPerSM(major, minor int) int {
	switch {
	case major == 7 && minor == 5, major == 8 && minor == 6, major == 8 && minor == 7:
		return 16
	case major == 8 && minor == 9:
		return 24
	case major >= 7:
		return 32
	}
	return 0
}

// fp32PerSM returns the fp32 lanes of one SM of compute capability
// major.minor: 64 on Volta, Turing and the A100, 128 on the other Ampere,
// Ada and Hopper parts; 0 if unknown.
func fp32PerSM(major, minor int) int {
	switch {
	case major == 7, major == 8 && minor == 0:
		return 64
	case major >= 8:
		return 128
	}
	return 0
}
