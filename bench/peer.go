package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"

	"github.com/golora/lora"
	"github.com/golora/lora/internal/perf"
)

// peerConfig says how to run the peer: PyTorch through bench/peer_torch.py.
type peerConfig struct {
	name, python, script string
}

func newPeer(name, python, script string) (*peerConfig, error) {
	if name != "torch" {
		return nil, fmt.Errorf("unknown peer %q: the one peer is torch", name)
	}
	if script == "" {
		candidates := []string{filepath.Join("bench", "peer_torch.py"), "peer_torch.py"}
		if exe, err := os.Executable(); err == nil {
			candidates = append(candidates, filepath.Join(filepath.Dir(exe), "peer_torch.py"))
		}
		for _, c := range candidates {
			if _, err := os.Stat(c); err == nil {
				script = c
				break
			}
		}
		if script == "" {
			return nil, errors.New("peer_torch.py not found in ./bench, . or beside this program: pass -peer-script")
		}
	}
	if python == "" {
		// The first interpreter that has torch: the one on the PATH, or
		// Debian's, where `make bench-peer` installs python3-torch.
		for _, p := range []string{"python3", "/usr/bin/python3"} {
			if exec.Command(p, "-c", "import torch").Run() == nil {
				python = p
				break
			}
		}
		if python == "" {
			return nil, errors.New("peer torch: no python3 with torch found (make bench-peer installs Debian's python3-torch); pass -python")
		}
	}
	if _, err := exec.LookPath(python); err != nil {
		return nil, fmt.Errorf("peer torch: %w", err)
	}
	return &peerConfig{name: name, python: python, script: script}, nil
}

// peerShape is a shape the peer times, in float32 or, with DType "bf16",
// with W, x and y in bfloat16 (A and B float32, as PEFT keeps them).
type peerShape struct {
	N     int    `json:"n,omitempty"`
	In    int    `json:"in"`
	Out   int    `json:"out"`
	R     int    `json:"r"`
	DType string `json:"dtype,omitempty"` // "" for float32
}

// peerDType returns the peer's spelling of a row's dtype: "" for f32.
func peerDType(d string) string {
	if rowDType(d) == dtF32 {
		return ""
	}
	return d
}

type peerRequest struct {
	Device      string      `json:"device"`
	Threads     int         `json:"threads"`
	MinTime     float64     `json:"min_time"`
	MinReps     int         `json:"min_reps"`
	RotateBytes int         `json:"rotate_bytes"`
	Forward     []peerShape `json:"forward"`
	Merge       []peerShape `json:"merge"`
	Train       []peerShape `json:"train"`
}

type peerAnswer struct {
	Torch   string `json:"torch"`
	Device  string `json:"device"`
	Threads int    `json:"threads"`
	BLAS    string `json:"blas"`
	// Settings states the precision settings of its products: on the GPU,
	// TF32 off for float32 and PyTorch's defaults for bf16.
	Settings string `json:"settings,omitempty"`
	Forward  []struct {
		peerShape
		Unmerged float64 `json:"unmerged_s"`
		Merged   float64 `json:"merged_s"`
	} `json:"forward"`
	Merge []struct {
		peerShape
		Merge float64 `json:"merge_s"`
	} `json:"merge"`
	Train []struct {
		peerShape
		Train    float64 `json:"train_s"`
		Unmerged float64 `json:"unmerged_s"`
	} `json:"train"`
}

// peerTimes holds the peer's times by shape, to be set beside our own as
// each row is measured.
type peerTimes struct {
	desc    string
	forward map[peerShape][2]float64 // unmerged, merged forward
	merge   map[peerShape]float64
	train   map[peerShape]float64 // backward: forward and backward, less the forward
}

// peerShapes returns the shapes the run will measure: the Forward rows
// (every rank of every in and n, then the bf16 ones), the Merge rows and
// the Training rows.
func peerShapes(cfg config) (forward, merge, train []peerShape) {
	for _, in := range cfg.ins {
		for _, n := range cfg.ns {
			for _, r := range cfg.ranks {
				forward = append(forward, peerShape{N: n, In: in, Out: in, R: r})
			}
			for _, s := range cfg.bf16Forward {
				if s.In == in && s.N == n {
					forward = append(forward, peerShape{N: n, In: in, Out: in, R: s.R, DType: dtBF16})
				}
			}
		}
		for _, r := range cfg.mergeRanks {
			merge = append(merge, peerShape{In: in, Out: in, R: r})
			for _, s := range cfg.bf16Merge {
				if s.In == in && s.R == r {
					merge = append(merge, peerShape{In: in, Out: in, R: r, DType: dtBF16})
				}
			}
		}
	}
	for _, s := range cfg.train {
		train = append(train, peerShape{N: s.N, In: s.In, Out: s.Out, R: s.R})
	}
	return forward, merge, train
}

// runPeer times the peer on every shape of the run, on the same device and
// thread count, before our own measurements, so that each row can be
// printed whole as soon as it is measured.
func runPeer(cfg config) (*peerTimes, error) {
	req := peerRequest{
		Device:  "cpu",
		Threads: runtime.GOMAXPROCS(0),
		MinTime: cfg.minTime.Seconds(), MinReps: cfg.minReps,
		RotateBytes: perf.RotateBytes(),
	}
	if lora.Backend() == "cuda" {
		req.Device = "cuda"
	}
	req.Forward, req.Merge, req.Train = peerShapes(cfg)
	body, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(cfg.peer.python, cfg.peer.script)
	cmd.Stdin = bytes.NewReader(body)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if lora.Backend() == "cuda" {
		if dev := os.Getenv("LORA_DEVICE"); dev != "" {
			cmd.Env = append(os.Environ(), "CUDA_VISIBLE_DEVICES="+dev)
		}
	}
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("peer torch: %v\n%s", err, stderr.String())
	}
	var ans peerAnswer
	if err := json.Unmarshal(stdout.Bytes(), &ans); err != nil {
		return nil, fmt.Errorf("peer torch: reading its answer: %v", err)
	}
	pt := &peerTimes{
		desc:    fmt.Sprintf("torch %s on %s, %d threads, BLAS %s", ans.Torch, ans.Device, ans.Threads, ans.BLAS),
		forward: map[peerShape][2]float64{}, merge: map[peerShape]float64{}, train: map[peerShape]float64{},
	}
	if ans.Settings != "" {
		pt.desc += "; " + ans.Settings
	}
	for _, a := range ans.Forward {
		pt.forward[a.peerShape] = [2]float64{a.Unmerged, a.Merged}
	}
	for _, a := range ans.Merge {
		pt.merge[a.peerShape] = a.Merge
	}
	for _, a := range ans.Train {
		pt.train[a.peerShape] = max(a.Train-a.Unmerged, 0)
	}
	for _, want := range [][]peerShape{req.Forward, req.Merge, req.Train} {
		for _, s := range want {
			_, f := pt.forward[s]
			_, m := pt.merge[s]
			_, t := pt.train[s]
			if !f && !m && !t {
				return nil, fmt.Errorf("peer torch: no time for in=%d out=%d r=%d n=%d %s in its answer", s.In, s.Out, s.R, s.N, rowDType(s.DType))
			}
		}
	}
	return pt, nil
}

// fillForward sets the peer's columns of Forward rows.
func (pt *peerTimes) fillForward(rows []ForwardRow) {
	for i := range rows {
		r := &rows[i]
		t, ok := pt.forward[peerShape{N: r.N, In: r.In, Out: r.Out, R: r.R, DType: peerDType(r.DType)}]
		if !ok || !(t[0] > 0) || !(t[1] > 0) {
			continue
		}
		r.PeerUnmerged, r.PeerMerged = t[0], t[1]
		r.OverPeerUnm = r.Fused.Median / t[0]
		r.OverPeerMerge = r.Merged.Median / t[1]
	}
}

// fillMerge sets the peer's columns of a Merge row.
func (pt *peerTimes) fillMerge(r *MergeRow) {
	if t := pt.merge[peerShape{In: r.In, Out: r.Out, R: r.R, DType: peerDType(r.DType)}]; t > 0 {
		r.PeerMerge = t
		r.OverPeer = r.Merge.Median / t
	}
}

// fillTrain sets the peer's columns of a Training row.
func (pt *peerTimes) fillTrain(r *TrainRow) {
	if t := pt.train[peerShape{N: r.N, In: r.In, Out: r.Out, R: r.R}]; t > 0 {
		r.PeerBackward = t
		r.OverPeer = r.Backward.Median / t
	}
}

// callPeer runs the peer script once with the request's common fields
// (device, threads, timing, rotation) and extra's, and decodes its answer
// into ans.
func callPeer(cfg config, extra map[string]any, ans any) error {
	req := map[string]any{"device": "cpu", "threads": runtime.GOMAXPROCS(0),
		"min_time": cfg.minTime.Seconds(), "min_reps": cfg.minReps, "rotate_bytes": perf.RotateBytes()}
	if lora.Backend() == "cuda" {
		req["device"] = "cuda"
	}
	for k, v := range extra {
		req[k] = v
	}
	body, err := json.Marshal(req)
	if err != nil {
		return err
	}
	cmd := exec.Command(cfg.peer.python, cfg.peer.script)
	cmd.Stdin = bytes.NewReader(body)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if lora.Backend() == "cuda" {
		if dev := os.Getenv("LORA_DEVICE"); dev != "" {
			cmd.Env = append(os.Environ(), "CUDA_VISIBLE_DEVICES="+dev)
		}
	}
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("peer torch: %v\n%s", err, stderr.String())
	}
	if err := json.Unmarshal(stdout.Bytes(), ans); err != nil {
		return fmt.Errorf("peer torch: reading its answer: %v", err)
	}
	return nil
}
