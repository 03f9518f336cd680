package kernels

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// TestResources checks resources.txt, the registers and shared memory of
// every kernel that package plan models occupancy with (its own test
// compares them): it was made from the committed lora.fatbin (its SHA-256),
// and it lists every kernel of Params, and no other, for every architecture
// the fatbin holds SASS for. make kernels then kernels/resources.sh rewrite
// both.
func TestResources(t *testing.T) {
	fatbin, err := os.ReadFile("lora.fatbin")
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(fatbin)
	f, err := os.Open("resources.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	seen := map[string]map[int]bool{}
	hash := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		fields := strings.Fields(line)
		switch {
		case strings.HasPrefix(line, "#"):
		case len(fields) == 2 && fields[0] == "fatbin":
			hash = fields[1]
		case len(fields) == 4:
			arch, err1 := strconv.Atoi(fields[0])
			regs, err2 := strconv.Atoi(fields[2])
			shared, err3 := strconv.Atoi(fields[3])
			if err1 != nil || err2 != nil || err3 != nil || regs <= 0 || regs > 255 || shared < 0 {
				t.Fatalf("resources.txt: bad line %q", line)
			}
			if seen[fields[1]] == nil {
				seen[fields[1]] = map[int]bool{}
			}
			seen[fields[1]][arch] = true
		default:
			t.Fatalf("resources.txt: bad line %q", line)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if hash != hex.EncodeToString(sum[:]) {
		t.Fatalf("resources.txt was made from a fatbin of SHA-256 %s, lora.fatbin's is %x: run kernels/resources.sh", hash, sum)
	}
	archs := []int{70, 75, 80, 86, 89, 90}
	var missing []string
	for name := range Params {
		for _, a := range archs {
			if !seen[name][a] {
				missing = append(missing, name+" sm_"+strconv.Itoa(a))
			}
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Errorf("resources.txt lacks %v", missing)
	}
	for name := range seen {
		if _, ok := Params[name]; !ok {
			t.Errorf("resources.txt lists %s, which Params does not", name)
		}
	}
}
