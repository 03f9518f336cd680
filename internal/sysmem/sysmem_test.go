package sysmem

import (
	"strings"
	"testing"
)

func TestBytes(t *testing.T) {
	for _, c := range []struct {
		n    int64
		want string
	}{{0, "0 B"}, {1023, "1023 B"}, {1024, "1 KiB"}, {1536, "1.5 KiB"}, {64 << 30, "64 GiB"}, {3 << 40, "3 TiB"}} {
		if got := Bytes(c.n); got != c.want {
			t.Errorf("Bytes(%d) = %q, want %q", c.n, got, c.want)
		}
	}
}

func TestCheck(t *testing.T) {
	total := Physical()
	if total == 0 {
		t.Skip("physical memory unknown on this system")
	}
	if err := Check("a test", 1<<20); err != nil {
		t.Errorf("Check(1 MiB) = %v, want nil", err)
	}
	err := Check("a 64 PiB table", 1<<56)
	if err == nil || !strings.Contains(err.Error(), "a 64 PiB table needs 64 PiB") {
		t.Errorf("Check(64 PiB) = %v, want an error naming the table and its size", err)
	}
	if err := Check("negative", -1); err == nil {
		t.Error("Check(-1) = nil, want an error")
	}
}
