//go:build unix

package cpu

import "syscall"

// cpuSeconds returns the user CPU time of the process so far: on a machine
// shared with other work, a benchmark's rate per CPU-second varies less
// than its rate per second of wall time.
func cpuSeconds() float64 {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return float64(ru.Utime.Sec) + float64(ru.Utime.Usec)/1e6
}
