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

type peerShape struct {
	N   int `json:"n,omitempty"`
	In  int `json:"in"`
	Out int `json:"out"`
	R   int `json:"r"`
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
	Forward []struct {
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

// runPeer times the peer on the report's shapes, on the same device and
// thread count, and fills the peer columns.
func runPeer(cfg config, rep *Report) error {
	req := peerRequest{
		Device:  "cpu",
		Threads: runtime.GOMAXPROCS(0),
		MinTime: cfg.minTime.Seconds(), MinReps: cfg.minReps,
		RotateBytes: perf.RotateBytes(),
	}
	if lora.Backend() == "cuda" {
		req.Device = "cuda"
	}
	for _, r := range rep.Forward {
		req.Forward = append(req.Forward, peerShape{N: r.N, In: r.In, Out: r.Out, R: r.R})
	}
	for _, r := range rep.Merge {
		req.Merge = append(req.Merge, peerShape{In: r.In, Out: r.Out, R: r.R})
	}
	for _, r := range rep.Train {
		req.Train = append(req.Train, peerShape{N: r.N, In: r.In, Out: r.Out, R: r.R})
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
	var ans peerAnswer
	if err := json.Unmarshal(stdout.Bytes(), &ans); err != nil {
		return fmt.Errorf("peer torch: reading its answer: %v", err)
	}
	if len(ans.Forward) != len(rep.Forward) || len(ans.Merge) != len(rep.Merge) || len(ans.Train) != len(rep.Train) {
		return fmt.Errorf("peer torch: answered %d forward, %d merge and %d training rows, want %d, %d and %d",
			len(ans.Forward), len(ans.Merge), len(ans.Train), len(rep.Forward), len(rep.Merge), len(rep.Train))
	}
	for i := range rep.Train {
		r, a := &rep.Train[i], ans.Train[i]
		r.PeerBackward = max(a.Train-a.Unmerged, 0)
		if r.PeerBackward > 0 {
			r.OverPeer = r.Backward.Median / r.PeerBackward
		}
	}
	for i := range rep.Forward {
		r, a := &rep.Forward[i], ans.Forward[i]
		r.PeerUnmerged, r.PeerMerged = a.Unmerged, a.Merged
		r.OverPeerUnm = r.Fused.Median / a.Unmerged
		r.OverPeerMerge = r.Merged.Median / a.Merged
	}
	for i := range rep.Merge {
		r, a := &rep.Merge[i], ans.Merge[i]
		r.PeerMerge = a.Merge
		r.OverPeer = r.Merge.Median / a.Merge
	}
	rep.Machine["peer"] = fmt.Sprintf("torch %s on %s, %d threads, BLAS %s", ans.Torch, ans.Device, ans.Threads, ans.BLAS)
	return nil
}
