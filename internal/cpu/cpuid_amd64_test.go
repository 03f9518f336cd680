//go:build amd64 && !purego

package cpu

import (
	"encoding/binary"
	"os"
	"regexp"
	"testing"
)

// TestVendorAMD checks cpuid's vendor string (leaf 0: EBX, EDX, ECX)
// against the one Linux reports in /proc/cpuinfo, and vendorAMD against
// it.
func TestVendorAMD(t *testing.T) {
	_, b, c, d := cpuid(0, 0)
	var v [12]byte
	binary.LittleEndian.PutUint32(v[0:], b)
	binary.LittleEndian.PutUint32(v[4:], d)
	binary.LittleEndian.PutUint32(v[8:], c)
	got := string(v[:])
	if want := "AuthenticAMD"; vendorAMD() != (got == want) {
		t.Fatalf("vendorAMD() = %v for the vendor string %q", vendorAMD(), got)
	}
	info, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		t.Skipf("no /proc/cpuinfo to compare the vendor string %q with: %v", got, err)
	}
	m := regexp.MustCompile(`(?m)^vendor_id\s*:\s*(\S+)`).FindSubmatch(info)
	if m == nil {
		t.Skipf("/proc/cpuinfo names no vendor_id to compare %q with", got)
	}
	if string(m[1]) != got {
		t.Fatalf("cpuid's vendor string %q, /proc/cpuinfo's %q", got, m[1])
	}
}
