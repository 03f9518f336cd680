package main

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/golora/lora"
)

// nf4Reference is bitsandbytes' NF4 table as the test's own reference:
// an element's value is float32(table[code]) · absmax, one rounding.
var nf4Reference = [16]float64{
	-1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453,
	-0.28444138169288635, -0.18477343022823334, -0.09105003625154495, 0.0,
	0.07958029955625534, 0.16093020141124725, 0.24611230194568634, 0.33791524171829224,
	0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0,
}

// smallNF4 is an NF4 table small enough for a test: a 64×64 layer, its
// rows at n below and above the rotation threshold.
func smallNF4() config {
	return config{
		nf4:     &nf4Config{In: 64, R: 4, Block: 32, Forward: []int{1, 20}, Backward: []int{3}, Bank: []int{1, 5}, Adapters: 4},
		minTime: time.Millisecond, minReps: 3, maxReps: 5,
	}
}

// fakeNF4Peer writes a stand-in for peer_torch.py into dir: it saves the
// request and a copy of the files it names into dir, and answers 1 ms ×
// (row's index + 1) for each row the request asks for, and check.
func fakeNF4Peer(t *testing.T, dir string, c *nf4Config, check string) *peerConfig {
	t.Helper()
	var rows []nf4PeerRow
	for i, r := range nf4PeerRows(c) {
		r.IDs, r.Seconds = nil, float64(i+1)*1e-3
		rows = append(rows, r)
	}
	ans, err := json.Marshal(map[string]any{"torch": "9.9", "device": "cpu", "threads": 2, "blas": "fake",
		"nf4": map[string]any{"check": check, "rows": rows}})
	if err != nil {
		t.Fatal(err)
	}
	answer, request, script := filepath.Join(dir, "answer.json"), filepath.Join(dir, "request.json"), filepath.Join(dir, "peer.sh")
	if err := os.WriteFile(answer, ans, 0o644); err != nil {
		t.Fatal(err)
	}
	sh := fmt.Sprintf(`cat >'%s'
d=$(sed -n 's/.*"codes":"\([^"]*\)\/codes".*/\1/p' '%s')
cp "$d/codes" "$d/absmax" "$d/values" '%s'/
cat '%s'
`, request, request, dir, answer)
	if err := os.WriteFile(script, []byte(sh), 0o644); err != nil {
		t.Fatal(err)
	}
	pc, err := newPeer("torch", "sh", script)
	if err != nil {
		t.Fatal(err)
	}
	return pc
}

// TestNF4Table runs the NF4 table on a small layer with a stand-in peer,
// and checks the rows (every dtype of every step, the nf4/bf16 ratio from
// the same rounds, GB/s on W's bytes, the peer's columns, a refused row
// showing its sentinel), what the peer was handed (lora's codes and absmax
// as stored, and values equal to the reference dequantization of them),
// the progress lines and the printed table.
func TestNF4Table(t *testing.T) {
	cfg := smallNF4()
	c := cfg.nf4
	dir := t.TempDir()
	cfg.peer = fakeNF4Peer(t, dir, c, "checked")
	var out, progress bytes.Buffer
	rep, err := run(cfg, &out, &progress)
	if err != nil {
		t.Fatal(err)
	}

	// What the peer was handed: the codes and absmax of lora.Quantize of
	// the table's W, and values equal to the reference's of those codes.
	codes, err := os.ReadFile(filepath.Join(dir, "codes"))
	if err != nil {
		t.Fatal(err)
	}
	absmax, values := readF32(t, filepath.Join(dir, "absmax")), readF32(t, filepath.Join(dir, "values"))
	src, err := newNF4Source(c)
	if err != nil {
		t.Fatal(err)
	}
	w, err := lora.NewMatrixFrom(c.In, c.In, src.values)
	if err != nil {
		t.Fatal(err)
	}
	q, err := lora.Quantize(lora.NF4, w, c.Block)
	if err != nil {
		t.Fatal(err)
	}
	wantCodes, wantAbsmax := make([]byte, c.In*c.In/2), make([]float32, c.In*c.In/c.Block)
	if err := q.ReadQuantized(wantCodes, wantAbsmax); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(codes, wantCodes) || !slices.Equal(absmax, wantAbsmax) {
		t.Fatalf("the peer was handed codes and absmax other than lora's (%d, %d bytes)", len(codes), 4*len(absmax))
	}
	if len(values) != c.In*c.In {
		t.Fatalf("%d values, want %d", len(values), c.In*c.In)
	}
	for i, v := range values {
		code := codes[i/2] >> 4
		if i%2 == 1 {
			code = codes[i/2] & 15
		}
		want := float32(nf4Reference[code]) * absmax[i/c.Block]
		if math.Float32bits(v) != math.Float32bits(want) {
			t.Fatalf("values[%d] = %g, want %g = table[%d] · absmax", i, v, want, code)
		}
	}
	var req struct {
		NF4 nf4PeerRequest `json:"nf4"`
	}
	if b, err := os.ReadFile(filepath.Join(dir, "request.json")); err != nil || json.Unmarshal(b, &req) != nil {
		t.Fatalf("request: %v", err)
	}
	if r := req.NF4; r.In != 64 || r.Out != 64 || r.R != 4 || r.Block != 32 || len(r.Rows) != 15 {
		t.Errorf("request %+v", r)
	}
	for _, r := range req.NF4.Rows {
		if (r.Op == opBank) != (len(r.IDs) == r.N) {
			t.Errorf("request row %+v: ids for the Bank rows only, one per row of x", r)
		}
	}
	if _, err := os.Stat(filepath.Dir(req.NF4.Codes)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the peer's files are left in %s", filepath.Dir(req.NF4.Codes))
	}

	// The rows: five steps of three dtypes, in order.
	var got []string
	for _, r := range rep.NF4 {
		got = append(got, fmt.Sprintf("%s %d %s", r.Op, r.N, r.DType))
	}
	var want []string
	for _, s := range []string{"forward 1", "forward 20", "backward 3", "bank 1", "bank 5"} {
		for _, dt := range []string{"f32", "bf16", "nf4"} {
			want = append(want, s+" "+dt)
		}
	}
	if !slices.Equal(got, want) {
		t.Fatalf("rows %v, want %v", got, want)
	}
	for i, r := range rep.NF4 {
		bpe := map[string]float64{"f32": 4, "bf16": 2, "nf4": 0.5 + 4.0/32}[r.DType]
		// The memory: the stored bytes, and little more (the Matrix itself).
		if r.BytesPerElem != bpe || float64(r.Memory) < bpe*64*64 || float64(r.Memory) > 1.5*bpe*64*64+1024 {
			t.Errorf("%s: %g bytes per element (want %g), memory %d", got[i], r.BytesPerElem, bpe, r.Memory)
		}
		if r.Peer != float64(i+1)*1e-3 {
			t.Errorf("%s: peer %g, want its own row's %g", got[i], r.Peer, float64(i+1)*1e-3)
		}
		if r.Err != "" {
			// Only the Bank may refuse a dtype of W (NewBank over bf16 or
			// nf4); f32 rows always run.
			if r.Op != opBank || r.DType == dtF32 || r.Sentinel != "ErrDType" || r.Time.Calls != 0 {
				t.Errorf("%s refused: %q (%s)", got[i], r.Err, r.Sentinel)
			}
			continue
		}
		if r.Time.Calls < 3 || r.OverPeer != r.Time.Median/r.Peer {
			t.Errorf("%s: %+v", got[i], r)
		}
		if want := bpe * 64 * 64 / r.Time.Median / 1e9; math.Abs(r.GBs-want) > 1e-9*want {
			t.Errorf("%s: %g GB/s, want %g on W's bytes", got[i], r.GBs, want)
		}
		if r.N <= 16 && r.Copies < 2 || r.N > 16 && r.Copies != 1 {
			t.Errorf("%s: %d copies of W", got[i], r.Copies)
		}
		if r.DType == dtNF4 {
			if bf := rep.NF4[i-1]; bf.Err == "" && r.OverBF16 != r.Time.Median/bf.Time.Median {
				t.Errorf("%s: nf4/bf16 %g, want %g ÷ %g", got[i], r.OverBF16, r.Time.Median, bf.Time.Median)
			}
		} else if r.OverBF16 != 0 {
			t.Errorf("%s: an nf4/bf16 ratio %g on a %s row", got[i], r.OverBF16, r.DType)
		}
	}
	if rep.Machine["peer"] != "torch 9.9 on cpu, 2 threads, BLAS fake; NF4 W checked" {
		t.Errorf("peer %q", rep.Machine["peer"])
	}

	// The table: a line per row, refused rows with their sentinel, the
	// legend naming the dtypes of x and y and the measured memory.
	text := out.String()
	for _, w := range []string{"x and y (dy and dx) are bf16 on the bf16 and nf4 rows, f32 on the f32 rows",
		"W in memory (", "nf4/bf16", "ours/PyTorch", "bit for bit"} {
		if !strings.Contains(text, w) {
			t.Errorf("table lacks %q:\n%s", w, text)
		}
	}
	// The heap's growth on the CPU; on a GPU, W's stored state.
	mem := "W in memory (measured: the heap's growth"
	if lora.Backend() != "cpu" {
		mem = "W in memory (its stored state)"
	}
	if !strings.Contains(text, mem) {
		t.Errorf("table lacks %q:\n%s", mem, text)
	}
	for _, r := range rep.NF4 {
		// After the key cells: B/elem and the figures, or the note.
		line := regexp.MustCompile(fmt.Sprintf(`(?m)^ +%s +%d +%s +(\S+ +)(.*)$`, r.Op, r.N, r.DType)).FindStringSubmatch(text)
		if line != nil && strings.HasPrefix(line[1], "unstable,") {
			line[2] = line[1] + line[2]
		}
		switch {
		case line == nil:
			t.Errorf("no line for %s n=%d %s:\n%s", r.Op, r.N, r.DType, text)
		case r.Err != "" && !strings.HasPrefix(line[2], r.Sentinel+" "):
			t.Errorf("refused row %s n=%d %s prints %q, want its sentinel %s", r.Op, r.N, r.DType, line[2], r.Sentinel)
		case r.Err == "" && r.Time.unstable() && !strings.HasPrefix(line[2], "unstable, re-run"):
			t.Errorf("unstable row %s n=%d %s prints %q", r.Op, r.N, r.DType, line[2])
		case r.Err == "" && !r.Time.unstable() && !strings.HasPrefix(line[2], r.Time.String()):
			t.Errorf("row %s n=%d %s prints %q, want its time %s", r.Op, r.N, r.DType, line[2], r.Time)
		}
	}

	// Progress: the peer, the host cost, the set-up, then a line per step.
	lines := strings.Split(strings.TrimSuffix(progress.String(), "\n"), "\n")
	if len(lines) != 3+5+1 || !strings.Contains(lines[0], "PyTorch on the NF4 table") || !strings.HasPrefix(lines[7], "[8/8] NF4 table: bank n=5") || !strings.HasPrefix(lines[8], "measured in") {
		t.Errorf("progress:\n%s", progress.String())
	}

	// Saved and printed again: the same table.
	js, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	back, err := loadReport(js)
	if err != nil {
		t.Fatal(err)
	}
	var again bytes.Buffer
	printTable(&again, back)
	_, section, _ := strings.Cut(text, "\nNF4:")
	if !strings.Contains(again.String(), section) {
		t.Errorf("printed from the saved report:\n%s\nwant the section\n%s", again.String(), section)
	}
}

func readF32(t *testing.T, path string) []float32 {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	v := make([]float32, len(b)/4)
	for i := range v {
		v[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return v
}

// TestNF4Quick runs the NF4 table as -quick has it, bf16 and nf4 alone,
// and checks its two rows and their ratio.
func TestNF4Quick(t *testing.T) {
	cfg := smallNF4()
	cfg.nf4.Forward, cfg.nf4.Backward, cfg.nf4.Bank, cfg.nf4.DTypes = []int{1}, nil, nil, []string{dtBF16, dtNF4}
	var out bytes.Buffer
	rep, err := run(cfg, &out, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.NF4) != 2 {
		t.Fatalf("%d rows, want bf16 and nf4:\n%s", len(rep.NF4), out.String())
	}
	bf, q := rep.NF4[0], rep.NF4[1]
	if bf.DType != dtBF16 || q.DType != dtNF4 || !(q.OverBF16 > 0) || q.OverBF16 != q.Time.Median/bf.Time.Median {
		t.Errorf("rows %+v and %+v", bf, q)
	}
	if strings.Count(out.String(), "forward     1") != 2 {
		t.Errorf("table:\n%s", out.String())
	}
}

// TestNF4PeerRefused checks that a peer whose answer lacks the check of the
// NF4 W, or a row's time, fails the run.
func TestNF4PeerRefused(t *testing.T) {
	cfg := smallNF4()
	cfg.peer = fakeNF4Peer(t, t.TempDir(), cfg.nf4, "")
	if _, err := run(cfg, io.Discard, io.Discard); err == nil || !strings.Contains(err.Error(), "no check of the NF4 W") {
		t.Errorf("answer without the check: %v", err)
	}
	cfg.nf4.Forward = append(cfg.nf4.Forward, 7) // a row the fake peer does not answer
	cfg.peer = fakeNF4Peer(t, t.TempDir(), smallNF4().nf4, "checked")
	if _, err := run(cfg, io.Discard, io.Discard); err == nil || !strings.Contains(err.Error(), "no time for the NF4 table's forward n=7 f32") {
		t.Errorf("answer without a row: %v", err)
	}
}

// TestNF4Format prints rows of every kind, a refused one, an unstable one,
// and figures of every width, and checks every line keeps the heading's
// columns.
func TestNF4Format(t *testing.T) {
	rep := &Report{Machine: map[string]string{"backend": "cpu"}}
	for i, med := range []float64{1.2e-6, 143.1e-6, 20.42e-3, 366.77e-3, 12.5} {
		dt := nf4DTypes[i%3]
		r := NF4Row{Op: []string{opForward, opBackward, opBank}[i%3], N: []int{1, 16, 256, 4096, 1}[i], In: 4096, Out: 4096, R: 16,
			DType: dt, BytesPerElem: bytesPerElem(dt, 64), Memory: 9 << 20, Time: stat(med, 0.3),
			GBs: math.Pow(10, float64(i-1)), Peer: med * math.Pow(10, float64(i-2)) * 1.2}
		r.OverPeer = r.Time.Median / r.Peer
		if dt == dtNF4 {
			r.Block, r.OverBF16 = 64, 0.28
		}
		rep.NF4 = append(rep.NF4, r)
	}
	rep.NF4 = append(rep.NF4, NF4Row{Op: opBank, N: 16, In: 4096, Out: 4096, R: 16, DType: dtNF4, Block: 64,
		BytesPerElem: 0.5625, Memory: 9 << 20, Peer: 1e-3, Err: "lora: NewBank: w is NF4, want F32: unsupported dtype", Sentinel: "ErrDType"})
	rep.NF4 = append(rep.NF4, NF4Row{Op: opForward, N: 64, In: 4096, Out: 4096, R: 16, DType: dtBF16,
		BytesPerElem: 2, Memory: 32 << 20, Time: stat(1e-3, 0.9), Peer: 1e-3, OverPeer: 1})
	var out bytes.Buffer
	printTable(&out, rep)
	text := out.String()
	_, rest, _ := strings.Cut(text, "\nNF4:")
	var table []string
	for _, l := range strings.Split(rest, "\n") {
		if strings.HasPrefix(l, "  ") {
			table = append(table, l)
		}
	}
	if len(table) != 1+len(rep.NF4) {
		t.Fatalf("%d table lines, want a heading and %d rows:\n%s", len(table), len(rep.NF4), text)
	}
	head := []rune(table[0])
	for _, l := range table[1:] {
		r := []rune(l)
		if strings.Contains(l, "unstable") {
			continue // the key cells, then the note
		}
		if len(r) != len(head) {
			t.Errorf("row\n%s\nis %d wide, the heading\n%s\n%d:\n%s", l, len(r), table[0], len(head), text)
		}
	}
	for _, w := range []string{
		"   ErrDType  ", // the refused row: its sentinel in the time column, no figures
		"0.280×",
		"unstable, re-run: spread time 90%",
		"nf4 9.00 MiB = 4.50 bits/element", "block 64",
		"0.0083×", // a ratio far below 1 keeps its digits
	} {
		if !strings.Contains(text, w) {
			t.Errorf("table lacks %q:\n%s", w, text)
		}
	}
}

// TestSentinel checks the name a refused row shows.
func TestSentinel(t *testing.T) {
	for _, c := range []struct {
		err  error
		want string
	}{
		{fmt.Errorf("lora: NewBank: %w", lora.ErrDType), "ErrDType"},
		{fmt.Errorf("outer: %w", fmt.Errorf("lora: x: %w", lora.ErrShape)), "ErrShape"},
		{lora.ErrAdapter, "ErrAdapter"},
		{errors.New("something else"), "error"},
	} {
		if got := sentinel(c.err); got != c.want {
			t.Errorf("sentinel(%v) = %q, want %q", c.err, got, c.want)
		}
	}
}

// TestConfigs checks what the flags measure: the NF4 table in the full
// run, one row of it with -quick, only it with -nf4, and the Bank table's
// rows with and without -quick.
func TestConfigs(t *testing.T) {
	full, quick := newConfig(false, false), newConfig(true, false)
	if c := full.nf4; c == nil || c.In != 4096 || c.R != 16 || c.Block != 64 || !slices.Equal(c.Forward, []int{1, 16, 64, 256}) ||
		!slices.Equal(c.Backward, []int{16, 256}) || !slices.Equal(c.Bank, []int{1, 16, 256}) || c.Adapters != 4 {
		t.Errorf("full run's NF4 table %+v", c)
	}
	if c := quick.nf4; c == nil || len(c.steps()) != 1 || c.steps()[0] != (nf4Step{opForward, 1}) || !slices.Equal(c.dtypes(), []string{"bf16", "nf4"}) {
		t.Errorf("-quick's NF4 table %+v, want its Forward at n = 1 alone, bf16 and nf4", c)
	}
	if !slices.Equal(full.nf4.dtypes(), []string{"f32", "bf16", "nf4"}) {
		t.Errorf("full run's NF4 dtypes %v", full.nf4.dtypes())
	}
	for _, quick := range []bool{false, true} {
		only := newConfig(quick, true)
		if len(only.ins)+len(only.ns)+len(only.mergeRanks)+len(only.train)+len(only.bf16Forward)+len(only.bf16Merge) != 0 ||
			!reflectEqual(only.nf4, newConfig(quick, false).nf4) || only.minTime != newConfig(quick, false).minTime {
			t.Errorf("-nf4 (quick %v) measures %+v", quick, only)
		}
	}
	if !slices.Equal(full.bankNs, []int{16, 64, 256}) || !slices.Equal(quick.bankNs, []int{16}) {
		t.Errorf("Bank table's n: %v, and with -quick %v", full.bankNs, quick.bankNs)
	}
	if n := len(bankCases(rand.New(rand.NewPCG(1, 2)), 4096, 16, quick.bankNs)); n != 5 {
		t.Errorf("-bank -quick: %d rows, want 5 (1, 8 and 16 adapters at n = 16)", n)
	}
}

func reflectEqual(a, b *nf4Config) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return a != nil && bytes.Equal(x, y)
}
