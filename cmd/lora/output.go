package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"

	"github.com/golora/lora/peft"
)

// Names of the directories a merge makes beside -out: the temporary one it
// writes into, and, where directories cannot be exchanged in one rename,
// the old -out that -force moves aside until the new one is in place.
const (
	tmpInfix = ".lora-merge-tmp-"
	oldInfix = ".lora-merge-old-"
)

// outputDir is the output of a merge while it is being written: a temporary
// directory beside -out that commit makes -out.
type outputDir struct {
	out     string   // -out, absolute
	tmp     string   // the temporary directory, written into
	created []string // parent directories made for it, deepest first
	lock    *outLock // held until the output is committed or abandoned
	mu      sync.Mutex
	done    bool // committed
	gone    bool // abandoned
}

// Hooks for the tests: the renames of commit.
var (
	renameDir = os.Rename
	swapDirs  = swapPaths
)

// lockOutputDir checks that out can be the output of a merge, makes its
// parent directories and takes the lock of merges into out: a merge into
// out that is running is an error. The merge runs with the lock held, from
// its first checks; makeTemp then prepares the output.
func lockOutputDir(out string) (*outputDir, error) {
	if err := checkOutPath(out); err != nil {
		return nil, err
	}
	out, err := filepath.Abs(out)
	if err != nil {
		return nil, err
	}
	parent := filepath.Dir(out)
	if parent == out {
		return nil, fmt.Errorf("-out %s is a root directory: give a directory inside one", out)
	}
	if wd, err := os.Getwd(); err == nil && within(wd, out) {
		return nil, fmt.Errorf("-out %s holds the working directory, which the merge would replace by a rename: give another directory", out)
	}
	od := &outputDir{out: out}
	for d := parent; !exists(d); d = filepath.Dir(d) {
		od.created = append(od.created, d)
		if d == filepath.Dir(d) {
			break
		}
	}
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return nil, err
	}
	if od.lock, err = lockOutput(out); err != nil {
		od.removeCreated()
		return nil, err
	}
	return od, nil
}

// makeTemp, with the lock held, removes what an interrupted merge left
// beside od.out, saying so on stderr; checks that od.out is missing or an
// empty directory, or that force allows replacing it; and makes the
// temporary directory the output is written into.
func (od *outputDir) makeTemp(force bool, stderr io.Writer) error {
	od.mu.Lock()
	defer od.mu.Unlock()
	if od.gone {
		return errors.New("the output was abandoned")
	}
	out := od.out
	parent, name := filepath.Dir(out), filepath.Base(out)
	if err := removeStale(parent, name, out, stderr); err != nil {
		return err
	}
	if fi, err := os.Lstat(out); err == nil {
		if err := checkOutPath(out); err != nil {
			return err
		}
		if !fi.IsDir() {
			return fmt.Errorf("-out %s exists and is not a directory", out)
		}
		empty, err := isEmptyDir(out)
		if err != nil {
			return err
		}
		if !empty && !force {
			return fmt.Errorf("-out %s is a directory that is not empty: give a new or empty one, or -force to replace it", out)
		}
	} else if !isNotExist(err) {
		return err
	}
	tmp, err := os.MkdirTemp(parent, "."+name+tmpInfix+"*")
	if err != nil {
		return err
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		os.Remove(tmp)
		return err
	}
	od.tmp = tmp
	return nil
}

// checkOutPath refuses, before any work, an -out that is a symbolic link:
// the output replaces -out by a rename, which would replace the link, not
// the directory it names, and the rename into a link that names nothing
// fails once everything is written. It also refuses an -out that exists and
// is not a directory.
func checkOutPath(out string) error {
	clean := filepath.Clean(out)
	fi, err := os.Lstat(clean)
	switch {
	case isNotExist(err):
		return nil
	case err != nil:
		return err
	case fi.Mode()&fs.ModeSymlink != 0:
		target, _ := os.Readlink(clean)
		if _, err := os.Stat(clean); err != nil {
			return fmt.Errorf("-out %s is a symbolic link to %s, which cannot be followed (%v): give a directory that is not a link", out, target, unwrapPath(err))
		}
		return fmt.Errorf("-out %s is a symbolic link to %s: merge replaces -out by a rename, which would replace the link, not %s: give %s itself, or remove the link", out, target, target, target)
	case !fi.IsDir():
		return fmt.Errorf("-out %s exists and is not a directory", out)
	}
	return nil
}

// unwrapPath returns the error inside a *fs.PathError, without the path
// that a message names already.
func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// removeStale removes the directories that an interrupted merge into out
// left in parent: temporary ones, and an old -out moved aside, which goes
// back to out when out is missing (the merge stopped between the two
// renames that replace it) and is removed otherwise.
func removeStale(parent, name, out string, stderr io.Writer) error {
	entries, err := os.ReadDir(parent)
	if err != nil {
		if isNotExist(err) {
			return nil
		}
		return err
	}
	for _, e := range entries {
		path := filepath.Join(parent, e.Name())
		switch {
		case !e.IsDir():
		case strings.HasPrefix(e.Name(), "."+name+tmpInfix):
			fmt.Fprintf(stderr, "lora merge: removing %s, left by an interrupted merge\n", path)
			if err := os.RemoveAll(path); err != nil {
				return err
			}
		case strings.HasPrefix(e.Name(), "."+name+oldInfix):
			if !exists(out) {
				fmt.Fprintf(stderr, "lora merge: restoring %s from %s, where an interrupted merge left it\n", out, path)
				if err := os.Rename(path, out); err != nil {
					return err
				}
				continue
			}
			fmt.Fprintf(stderr, "lora merge: removing %s, the old %s that an interrupted merge replaced\n", path, out)
			if err := os.RemoveAll(path); err != nil {
				return err
			}
		}
	}
	return nil
}

func isEmptyDir(dir string) (bool, error) {
	f, err := os.Open(dir)
	if err != nil {
		return false, err
	}
	defer f.Close()
	names, err := f.Readdirnames(1)
	if errors.Is(err, io.EOF) {
		return true, nil
	}
	return len(names) == 0, err
}

// commit makes the temporary directory out: by one rename when out is
// missing or empty; with out replaced (-force) by exchanging the two in one
// rename where the system can, and otherwise by moving out aside, renaming
// and removing the old one, moving it back if the rename fails.
func (od *outputDir) commit() error {
	od.mu.Lock()
	defer od.mu.Unlock()
	if od.gone {
		return errors.New("the output was abandoned")
	}
	fi, err := os.Stat(od.out)
	switch {
	case isNotExist(err):
		if err := renameDir(od.tmp, od.out); err != nil {
			return fmt.Errorf("moving the output into place: %w", err)
		}
	case err != nil:
		return err
	case !fi.IsDir():
		return fmt.Errorf("-out %s exists and is not a directory", od.out)
	default:
		if empty, err := isEmptyDir(od.out); err != nil {
			return err
		} else if empty {
			if err := os.Remove(od.out); err != nil {
				return err
			}
			if err := renameDir(od.tmp, od.out); err != nil {
				os.Mkdir(od.out, fi.Mode().Perm())
				return fmt.Errorf("moving the output into place: %w", err)
			}
			break
		}
		if err := od.replace(); err != nil {
			return err
		}
	}
	od.done = true
	syncDir(filepath.Dir(od.out))
	od.lock.release()
	return nil
}

// replace puts the temporary directory in the place of the existing out.
func (od *outputDir) replace() error {
	if err := swapDirs(od.tmp, od.out); err == nil {
		// tmp now holds the old out.
		if err := os.RemoveAll(od.tmp); err != nil {
			return fmt.Errorf("removing the replaced %s (now %s): %w", od.out, od.tmp, err)
		}
		return nil
	} else if !errors.Is(err, errNoSwap) {
		return fmt.Errorf("replacing %s: %w", od.out, err)
	}
	old, err := os.MkdirTemp(filepath.Dir(od.out), "."+filepath.Base(od.out)+oldInfix+"*")
	if err != nil {
		return err
	}
	if err := os.Remove(old); err != nil {
		return err
	}
	if err := renameDir(od.out, old); err != nil {
		return fmt.Errorf("moving %s aside: %w", od.out, err)
	}
	if err := renameDir(od.tmp, od.out); err != nil {
		if rerr := os.Rename(old, od.out); rerr != nil {
			return fmt.Errorf("moving the output into place: %w; and moving %s back from %s: %v", err, od.out, old, rerr)
		}
		return fmt.Errorf("moving the output into place: %w", err)
	}
	if err := os.RemoveAll(old); err != nil {
		return fmt.Errorf("removing the replaced %s (now %s): %w", od.out, old, err)
	}
	return nil
}

// abandon removes the temporary directory and the parents made for it,
// unless the output was committed, and lets the lock go. It returns whether
// it removed the temporary directory.
func (od *outputDir) abandon() bool {
	od.mu.Lock()
	defer od.mu.Unlock()
	if od.done || od.gone {
		return false
	}
	od.gone = true
	removed := false
	if od.tmp != "" {
		// Renamed first, so that a file the merge creates in the meantime
		// cannot keep the directory from being removed; the new name is
		// still one that the next merge removes, should this one die
		// meanwhile.
		dir := od.tmp
		if os.Rename(od.tmp, od.tmp+"-abandoned") == nil {
			dir = od.tmp + "-abandoned"
		}
		os.RemoveAll(dir)
		removed = true
	}
	od.lock.release()
	od.removeCreated()
	return removed
}

// interrupts stops a merge on SIGINT or SIGTERM: it abandons the output
// (removing the temporary directory and letting the lock go, unless the
// output is in place already), says so on stderr and exits with status 128
// plus the signal's number, as a shell reports a process a signal ended.
type interrupts struct {
	mu   sync.Mutex // held while the output is locked, and by the handler
	od   *outputDir
	ch   chan os.Signal
	quit chan struct{}
}

// catchSignals starts handling SIGINT and SIGTERM for the merge, until
// stop.
func catchSignals(stderr io.Writer) *interrupts {
	in := &interrupts{ch: make(chan os.Signal, 1), quit: make(chan struct{})}
	signal.Notify(in.ch, os.Interrupt, syscall.SIGTERM)
	go func() {
		select {
		case sig := <-in.ch:
			in.mu.Lock() // the output locked, or not begun
			switch od := in.od; {
			case od == nil || !od.abandon():
				fmt.Fprintf(stderr, "lora: merge: %v: stopped\n", sig)
			default:
				fmt.Fprintf(stderr, "lora: merge: %v: stopped, and removed %s\n", sig, od.tmp)
			}
			code := 1
			if s, ok := sig.(syscall.Signal); ok {
				code = 128 + int(s)
			}
			os.Exit(code)
		case <-in.quit:
		}
	}()
	return in
}

// lock runs lockOutputDir, which a signal does not interrupt, and has a
// later signal abandon the output it returns.
func (in *interrupts) lock(out string) (*outputDir, error) {
	in.mu.Lock()
	defer in.mu.Unlock()
	od, err := lockOutputDir(out)
	in.od = od
	return od, err
}

// stop ends the handling of signals.
func (in *interrupts) stop() {
	signal.Stop(in.ch)
	close(in.quit)
}

func (od *outputDir) removeCreated() {
	for _, d := range od.created {
		os.Remove(d) // only if empty
	}
}

// syncDir flushes a directory's entries to disk, so that a rename in it
// survives a crash; where that is not possible, it does nothing.
func syncDir(dir string) {
	if f, err := os.Open(dir); err == nil {
		f.Sync()
		f.Close()
	}
}

// errNoSwap says that the system cannot exchange two directories in one
// rename.
var errNoSwap = errors.New("no atomic exchange of directories")

// checkOutput refuses an output that would replace an input: -out the base
// model's directory, or a directory holding an input (which -force would
// remove).
func checkOutput(o mergeOptions, m *model, sides []string) error {
	if sameFile(o.out, m.dir) {
		return fmt.Errorf("-out %s is the base model's directory: the input is never overwritten", o.out)
	}
	if fi, err := os.Stat(o.out); err == nil && !fi.IsDir() {
		return fmt.Errorf("-out %s exists and is not a directory", o.out)
	}
	out, err := filepath.Abs(o.out)
	if err != nil {
		return err
	}
	if r, err := filepath.EvalSymlinks(out); err == nil {
		out = r
	}
	inputs := m.inputFiles()
	inputs = append(inputs, sides...)
	inputs = append(inputs, filepath.Join(o.adapter, peft.ConfigFile), filepath.Join(o.adapter, peft.WeightsFile))
	for _, in := range inputs {
		paths := []string{in}
		if r, err := filepath.EvalSymlinks(in); err == nil {
			paths = append(paths, r)
		}
		for _, p := range paths {
			if a, err := filepath.Abs(p); err == nil && within(a, out) {
				return fmt.Errorf("-out %s holds the input %s: the input is never overwritten", o.out, in)
			}
		}
	}
	return nil
}

// within reports whether the clean absolute path p is dir or inside it.
func within(p, dir string) bool {
	rel, err := filepath.Rel(dir, p)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator)) && !filepath.IsAbs(rel)
}
