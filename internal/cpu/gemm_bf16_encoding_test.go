package cpu

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// TestBF16Encodings checks the bytes that gemm_bf16_amd64.s writes for the
// instructions Go's assembler does not know: each "// instruction" comment
// line followed by a line of BYTE directives is assembled again by
// binutils' as, and the bytes must be the same.
func TestBF16Encodings(t *testing.T) {
	asm, err1 := exec.LookPath("as")
	objcopy, err2 := exec.LookPath("objcopy")
	if err1 != nil || err2 != nil {
		t.Skip("binutils' as and objcopy are needed to assemble the instructions again")
	}
	src, err := os.ReadFile("gemm_bf16_amd64.s")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(src), "\n")
	byteRe := regexp.MustCompile(`BYTE \$0x([0-9a-f]{2})`)
	var instrs []string
	var want [][]byte
	for i := 0; i+1 < len(lines); i++ {
		c, next := strings.TrimSpace(lines[i]), strings.TrimSpace(lines[i+1])
		if !strings.HasPrefix(c, "// ") || !strings.HasPrefix(next, "BYTE ") {
			continue
		}
		var b []byte
		for _, m := range byteRe.FindAllStringSubmatch(next, -1) {
			v, _ := strconv.ParseUint(m[1], 16, 8)
			b = append(b, byte(v))
		}
		if len(b) != strings.Count(next, "BYTE") {
			t.Fatalf("line %d: a BYTE directive not of the form BYTE $0xhh: %s", i+2, next)
		}
		instrs = append(instrs, strings.TrimPrefix(c, "// "))
		want = append(want, b)
	}
	if len(instrs) < 40 {
		t.Fatalf("found %d encoded instructions, want the kernels' (over 40)", len(instrs))
	}
	dir := t.TempDir()
	s, o, bin := filepath.Join(dir, "x.s"), filepath.Join(dir, "x.o"), filepath.Join(dir, "x.bin")
	if err := os.WriteFile(s, []byte(strings.Join(instrs, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(asm, "--64", "-o", o, s).CombinedOutput(); err != nil {
		t.Fatalf("as: %v\n%s", err, out)
	}
	if out, err := exec.Command(objcopy, "-O", "binary", "-j", ".text", o, bin).CombinedOutput(); err != nil {
		t.Fatalf("objcopy: %v\n%s", err, out)
	}
	got, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	for i, w := range want {
		if !bytes.HasPrefix(got, w) {
			t.Fatalf("%s: the .s has % x, as assembles % x", instrs[i], w, got[:min(len(got), len(w))])
		}
		got = got[len(w):]
	}
	if len(got) != 0 {
		t.Fatalf("as assembled %d bytes more than the .s holds", len(got))
	}
}
