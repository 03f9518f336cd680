package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestMergeTempName checks, while a merge is held before it writes, what
// it has made beside -out: the lock file .out.lora-merge-lock and one
// temporary directory .out.lora-merge-tmp-*, the name the usage gives and
// the next merge looks for. A second merge into the same -out, started
// meanwhile, is refused at once, before it reads its adapter, naming the
// first (this process) by its pid, and leaves the first's directory alone;
// the first then completes.
func TestMergeTempName(t *testing.T) {
	base, adapterDir := smallSetup(t, nil)
	if !canLock {
		t.Skip("no lock on this system")
	}
	parent := t.TempDir()
	out := filepath.Join(parent, "out")
	args := []string{"merge", "-base", base, "-adapter", adapterDir, "-out", out}
	defer func(f func()) { beforeWriting = f }(beforeWriting)
	held := false
	beforeWriting = func() {
		if held {
			return // the second merge, when it is not refused
		}
		held = true
		names := listDir(t, parent)
		if len(names) != 2 || names[0] != ".out.lora-merge-lock" || !strings.HasPrefix(names[1], ".out.lora-merge-tmp-") || len(names[1]) == len(".out.lora-merge-tmp-") {
			t.Errorf("beside -out while the merge writes: %v, want .out.lora-merge-lock and .out.lora-merge-tmp-*", names)
		}
		// The adapter of the second does not exist: the lock is taken
		// before any work.
		second := slices.Clone(args)
		second[4] = filepath.Join(parent, "no-adapter")
		_, stderr, err := runCmd(t, second...)
		if err == nil || !strings.Contains(err.Error(), "another merge into "+out+" is running (pid "+fmt.Sprint(os.Getpid())+", started ") {
			t.Errorf("a second merge into the same -out: %v, want a refusal naming pid %d\n%s", err, os.Getpid(), stderr)
		}
		if strings.Contains(stderr, "removing") {
			t.Errorf("the second merge removed something:\n%s", stderr)
		}
		if got := listDir(t, parent); !slices.Equal(got, names) {
			t.Errorf("the second merge changed %v into %v", names, got)
		}
	}
	if _, stderr, err := runCmd(t, args...); err != nil {
		t.Fatalf("%v\n%s", err, stderr)
	}
	if !held {
		t.Fatal("the merge never reached the hook")
	}
	if got := listDir(t, parent); !slices.Equal(got, []string{"out"}) {
		t.Errorf("after the merge, the parent of -out holds %v, want out alone", got)
	}
	if got := listDir(t, out); !slices.Equal(got, outputFiles) {
		t.Errorf("-out holds %v", got)
	}
}

// TestMergeSignal runs a merge in a child process and holds it after its
// first shard; then a merge into the same -out from this process is
// refused, naming the child's pid, and leaves its temporary directory; then
// SIGINT, or SIGTERM, ends the child with status 128 plus the signal's
// number, having removed its temporary directory and its lock file; and a
// new merge into -out finds nothing to clean up.
func TestMergeSignal(t *testing.T) {
	base, adapterDir := smallSetup(t, nil)
	if !canLock {
		t.Skip("no lock on this system")
	}
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM} {
		t.Run(sig.String(), func(t *testing.T) {
			parent := t.TempDir()
			out := filepath.Join(parent, "out")
			marker := filepath.Join(t.TempDir(), "held")
			args := []string{"merge", "-base", base, "-adapter", adapterDir, "-out", out}
			js, _ := json.Marshal(args)
			cmd := exec.Command(os.Args[0], "-test.run=^$")
			cmd.Env = append(os.Environ(), childArgs+"="+string(js), childHold+"="+marker)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			exited := make(chan error, 1)
			go func() { exited <- cmd.Wait() }()
			deadline := time.After(2 * time.Minute)
		wait:
			for {
				select {
				case err := <-exited:
					t.Fatalf("the child ended before it was held: %v\n%s", err, stderr.String())
				case <-deadline:
					cmd.Process.Kill()
					<-exited
					t.Fatalf("the child was not held within 2 minutes\n%s", stderr.String())
				case <-time.After(10 * time.Millisecond):
					if _, err := os.Stat(marker); err == nil {
						break wait
					}
				}
			}
			names := listDir(t, parent)
			var tmp string
			if len(names) == 2 && names[0] == ".out.lora-merge-lock" && strings.HasPrefix(names[1], ".out.lora-merge-tmp-") {
				tmp = filepath.Join(parent, names[1])
				if got := listDir(t, tmp); !slices.Equal(got, outputFiles[1:2]) {
					t.Errorf("the held merge's temporary directory holds %v, want its first shard", got)
				}
			} else {
				t.Errorf("beside -out while the child is held: %v", names)
			}

			_, errOut, err := runCmd(t, args...)
			if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("is running (pid %d, started ", cmd.Process.Pid)) {
				t.Errorf("a merge while the child holds -out: %v, want a refusal naming pid %d\n%s", err, cmd.Process.Pid, errOut)
			}
			if got := listDir(t, parent); !slices.Equal(got, names) {
				t.Errorf("the refused merge changed %v into %v", names, got)
			}

			if err := cmd.Process.Signal(sig); err != nil {
				t.Fatal(err)
			}
			var ee *exec.ExitError
			select {
			case err = <-exited:
			case <-time.After(2 * time.Minute):
				cmd.Process.Kill()
				t.Fatalf("the child did not end within 2 minutes of %v\n%s", sig, stderr.String())
			}
			if !errors.As(err, &ee) || ee.ExitCode() != 128+int(sig) {
				t.Errorf("the child ended with %v, want exit status %d", err, 128+int(sig))
			}
			if tmp != "" && !strings.Contains(stderr.String(), "stopped, and removed "+tmp) {
				t.Errorf("the child's stderr does not say it removed %s:\n%s", tmp, stderr.String())
			}
			if got := listDir(t, parent); len(got) != 0 {
				t.Errorf("after %v, the parent of -out holds %v", sig, got)
			}

			_, errOut, err = runCmd(t, args...)
			if err != nil {
				t.Fatalf("a merge after the child ended: %v\n%s", err, errOut)
			}
			if strings.Contains(errOut, "removing") {
				t.Errorf("the merge after the child found something to remove:\n%s", errOut)
			}
			if got := listDir(t, parent); !slices.Equal(got, []string{"out"}) {
				t.Errorf("the parent of -out holds %v", got)
			}
		})
	}
}
