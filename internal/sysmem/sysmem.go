// Package sysmem reports how much memory the machine has, so that an
// allocation it cannot hold is refused with an error instead of ending the
// process with the runtime's "out of memory".
package sysmem

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// Physical returns the bytes of physical memory of the machine, lowered to
// the cgroup's memory limit when the process runs under one, or 0 when
// neither can be read.
func Physical() uint64 {
	total := physical()
	for _, f := range []string{"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"} {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		v, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
		if err == nil && v > 0 && (total == 0 || v < total) {
			total = v
		}
		break
	}
	return total
}

// Check returns an error when an allocation of bytes cannot fit in the
// machine's physical memory (see Physical), naming what for and both sizes.
// When Physical is unknown it returns nil.
func Check(what string, bytes int64) error {
	total := Physical()
	if bytes < 0 || (total > 0 && uint64(bytes) > total) {
		return fmt.Errorf("%s needs %s, more than this machine's %s of memory", what, Bytes(bytes), Bytes(int64(total)))
	}
	return nil
}

// Bytes formats a byte count for a message: "64 GiB", "1.5 MiB", "12 B".
func Bytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	v, i := float64(n), -1
	for v >= unit && i < 4 {
		v /= unit
		i++
	}
	return strings.TrimSuffix(strconv.FormatFloat(v, 'f', 1, 64), ".0") + " " + string("KMGTP"[i]) + "iB"
}
