package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

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
	done    bool
}

// Hooks for the tests: the renames of commit.
var (
	renameDir = os.Rename
	swapDirs  = swapPaths
)

// prepareOutput checks that out is missing or an empty directory, or that
// force allows replacing it; removes what an interrupted merge into out left
// beside it, saying so on stderr; and makes the temporary directory the
// output is written into.
func prepareOutput(out string, force bool, stderr io.Writer) (*outputDir, error) {
	out, err := filepath.Abs(out)
	if err != nil {
		return nil, err
	}
	parent, name := filepath.Dir(out), filepath.Base(out)
	if parent == out {
		return nil, fmt.Errorf("-out %s is a root directory: give a directory inside one", out)
	}
	if wd, err := os.Getwd(); err == nil && within(wd, out) {
		return nil, fmt.Errorf("-out %s holds the working directory, which the merge would replace by a rename: give another directory", out)
	}
	if err := removeStale(parent, name, out, stderr); err != nil {
		return nil, err
	}
	if fi, err := os.Stat(out); err == nil {
		if !fi.IsDir() {
			return nil, fmt.Errorf("-out %s exists and is not a directory", out)
		}
		empty, err := isEmptyDir(out)
		if err != nil {
			return nil, err
		}
		if !empty && !force {
			return nil, fmt.Errorf("-out %s is a directory that is not empty: give a new or empty one, or -force to replace it", out)
		}
	} else if !isNotExist(err) {
		return nil, err
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
	tmp, err := os.MkdirTemp(parent, "."+name+tmpInfix+"*")
	if err != nil {
		od.removeCreated()
		return nil, err
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		os.Remove(tmp)
		od.removeCreated()
		return nil, err
	}
	od.tmp = tmp
	return od, nil
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
// unless the output was committed.
func (od *outputDir) abandon() {
	if od.done {
		return
	}
	os.RemoveAll(od.tmp)
	od.removeCreated()
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
