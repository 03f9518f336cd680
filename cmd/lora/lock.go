package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// lockSuffix ends the name of the lock file beside -out: .NAME.lora-merge-lock.
const lockSuffix = ".lora-merge-lock"

// outLock is the lock a merge holds on its -out while it prepares and
// writes it: an exclusive flock on the file .NAME.lora-merge-lock beside
// -out, which records the holder's pid and start time. While it is held, no
// other merge into the same -out starts, so every temporary directory found
// beside -out belongs to a merge that is gone. Where flock is not available
// (see lock_other.go), no lock is taken and f is nil.
type outLock struct {
	path string
	f    *os.File
}

// lockOutput takes the lock of merges into out, an absolute path whose
// parent exists, without waiting: a merge into out that holds it already
// is an error naming its pid and start time.
func lockOutput(out string) (*outLock, error) {
	if !canLock {
		return &outLock{}, nil
	}
	path := filepath.Join(filepath.Dir(out), "."+filepath.Base(out)+lockSuffix)
	for range 100 {
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
		if err != nil {
			return nil, fmt.Errorf("locking -out %s: %w", out, err)
		}
		held, err := tryLock(f)
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("locking -out %s with %s: %w", out, path, err)
		}
		if !held {
			owner := readOwner(f)
			f.Close()
			return nil, fmt.Errorf("another merge into %s is running (%s, holding %s): wait for it to end, or give another -out", out, owner, path)
		}
		// The merge that held the lock before removes the file before it
		// lets it go: a lock on a file no longer at path locks nothing.
		fi, ferr := f.Stat()
		pi, perr := os.Stat(path)
		if ferr != nil || perr != nil || !os.SameFile(fi, pi) {
			f.Close()
			continue
		}
		owner := fmt.Sprintf("pid %d, started %s", os.Getpid(), time.Now().Format(time.RFC3339))
		// Only messages read it: a failure here does not undo the lock.
		if f.Truncate(0) == nil {
			f.WriteAt([]byte(owner+"\n"), 0)
		}
		return &outLock{path: path, f: f}, nil
	}
	return nil, fmt.Errorf("locking -out %s: %s keeps being replaced", out, path)
}

// readOwner returns what the holder of the lock file f recorded: its pid
// and start time.
func readOwner(f *os.File) string {
	b := make([]byte, 256)
	n, _ := f.ReadAt(b, 0)
	s := strings.TrimSpace(string(b[:n]))
	if s == "" {
		return "its pid not yet recorded"
	}
	return s
}

// release removes the lock file and lets the lock go, in that order, so
// that a merge waiting on the old file sees that it is gone. It does
// nothing the second time.
func (l *outLock) release() {
	if l == nil || l.f == nil {
		return
	}
	os.Remove(l.path)
	l.f.Close()
	l.f = nil
}
