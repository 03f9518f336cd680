package main

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// outputFiles are the files a merge of smallSetup's model writes.
var outputFiles = []string{"config.json", "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors", indexName}

// listDir returns the names in dir, sorted.
func listDir(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	slices.Sort(names)
	return names
}

// TestMergeOutput checks that -out becomes the new model whole or not at
// all: a missing or empty -out is made the output; one that is not empty
// needs -force, which replaces it (stale files of another model and a
// config.json that is a folder included); a rename that fails leaves -out
// as it was; what an interrupted merge left beside -out is removed, or put
// back; and nothing but -out is left in its parent.
func TestMergeOutput(t *testing.T) {
	base, adapterDir := smallSetup(t, nil)
	failRename := func(from, to string) error {
		return &os.LinkError{Op: "rename", Old: from, New: to, Err: errors.New("injected failure")}
	}
	oldModel := func(t *testing.T, out string) {
		os.MkdirAll(filepath.Join(out, "config.json"), 0o755) // a folder where a file goes
		os.WriteFile(filepath.Join(out, "config.json", "x"), []byte("x"), 0o644)
		os.WriteFile(filepath.Join(out, "model.safetensors"), []byte("another model"), 0o644)
	}
	for _, c := range []struct {
		name    string
		setup   func(t *testing.T, out string)
		args    []string
		rename  func(from, to string) error // renameDir, when set
		noXchg  bool                        // swapDirs unavailable
		err     string                      // the error wanted, if any
		stderr  string                      // what stderr must say
		want    []string                    // the files of -out afterwards
		wantOld bool                        // -out holds the old model afterwards
	}{
		{name: "new", want: outputFiles},
		{name: "empty", setup: func(t *testing.T, out string) { os.MkdirAll(out, 0o755) }, want: outputFiles},
		{name: "not empty", setup: oldModel, err: "is a directory that is not empty", wantOld: true},
		{name: "-force", setup: oldModel, args: []string{"-force"}, want: outputFiles},
		{name: "-force without exchange", setup: oldModel, args: []string{"-force"}, noXchg: true, want: outputFiles},
		{name: "rename fails", rename: failRename, err: "injected failure"},
		{name: "rename fails into an empty -out", setup: func(t *testing.T, out string) { os.MkdirAll(out, 0o755) },
			rename: failRename, err: "injected failure", want: []string{}},
		{name: "rename fails, -force without exchange", setup: oldModel, args: []string{"-force"}, noXchg: true,
			rename: func(from, to string) error {
				if strings.Contains(from, tmpInfix) {
					return failRename(from, to)
				}
				return os.Rename(from, to)
			}, err: "injected failure", wantOld: true},
		{name: "stale temporary directory", setup: func(t *testing.T, out string) {
			stale := filepath.Join(filepath.Dir(out), "."+filepath.Base(out)+tmpInfix+"123")
			os.MkdirAll(stale, 0o755)
			os.WriteFile(filepath.Join(stale, "model.safetensors"), []byte("half"), 0o644)
		}, stderr: "left by an interrupted merge", want: outputFiles},
		{name: "old -out moved aside, -out missing", setup: func(t *testing.T, out string) {
			aside := filepath.Join(filepath.Dir(out), "."+filepath.Base(out)+oldInfix+"9")
			oldModel(t, aside)
		}, err: "is a directory that is not empty", stderr: "restoring", wantOld: true},
		{name: "old -out moved aside, -out replaced", setup: func(t *testing.T, out string) {
			oldModel(t, filepath.Join(filepath.Dir(out), "."+filepath.Base(out)+oldInfix+"9"))
			oldModel(t, out)
		}, args: []string{"-force"}, stderr: "that an interrupted merge replaced", want: outputFiles},
	} {
		t.Run(c.name, func(t *testing.T) {
			defer func(r func(string, string) error, x func(string, string) error) { renameDir, swapDirs = r, x }(renameDir, swapDirs)
			if c.rename != nil {
				renameDir = c.rename
			}
			if c.noXchg {
				swapDirs = func(a, b string) error { return errNoSwap }
			}
			parent := t.TempDir()
			out := filepath.Join(parent, "out")
			if c.setup != nil {
				c.setup(t, out)
			}
			args := append([]string{"merge", "-base", base, "-adapter", adapterDir, "-out", out}, c.args...)
			_, stderr, err := runCmd(t, args...)
			switch {
			case c.err == "" && err != nil:
				t.Fatalf("%v\n%s", err, stderr)
			case c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)):
				t.Fatalf("error %v, want %q", err, c.err)
			}
			if !strings.Contains(stderr, c.stderr) {
				t.Errorf("stderr does not say %q:\n%s", c.stderr, stderr)
			}
			switch {
			case c.wantOld:
				if b, err := os.ReadFile(filepath.Join(out, "model.safetensors")); err != nil || string(b) != "another model" {
					t.Errorf("the old -out is gone: %v", err)
				}
				if got := listDir(t, out); !slices.Equal(got, []string{"config.json", "model.safetensors"}) {
					t.Errorf("-out holds %v", got)
				}
			case c.want == nil:
				if _, err := os.Stat(out); !os.IsNotExist(err) {
					t.Errorf("-out exists: %v", err)
				}
			default:
				if got := listDir(t, out); !slices.Equal(got, c.want) {
					t.Errorf("-out holds %v, want %v", got, c.want)
				}
			}
			if got := listDir(t, parent); !slices.Equal(got, []string{"out"}) && !(len(got) == 0 && c.want == nil && !c.wantOld) {
				t.Errorf("the parent of -out holds %v, want out alone", got)
			}
		})
	}
}

// TestMergeHFCache merges from a Hugging Face cache layout, where every
// file of a snapshot, base shards and adapter included, is a symbolic link
// into blobs/: the output is the same, byte for byte, as the merge of the
// same files stored plainly, and the side files (*.json, *.txt, *.model,
// *.jinja, *.tiktoken) are copied as regular files, the other files not.
func TestMergeHFCache(t *testing.T) {
	base, adapterDir := smallSetup(t, nil)
	sides := map[string]string{
		"tokenizer.json":      `{"version": "1.0"}`,
		"tokenizer.model":     "sentencepiece",
		"vocab.txt":           "a\nb\n",
		"chat_template.jinja": "{{ messages }}",
		"tiktoken.tiktoken":   "YQ== 0",
		"README.md":           "not copied",
		".gitattributes":      "not copied",
		"notes.json.bak":      "not copied",
	}
	for name, data := range sides {
		if err := os.WriteFile(filepath.Join(base, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// The cache: models--x/blobs/<n> and models--x/snapshots/abc/<name> -> ../../blobs/<n>.
	cache := filepath.Join(t.TempDir(), "models--x")
	link := func(srcDir, snapName string) string {
		snap := filepath.Join(cache, "snapshots", snapName)
		for _, d := range []string{filepath.Join(cache, "blobs"), snap} {
			if err := os.MkdirAll(d, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		for i, name := range listDir(t, srcDir) {
			blob := fmt.Sprintf("%s%d", snapName, i)
			b, err := os.ReadFile(filepath.Join(srcDir, name))
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(cache, "blobs", blob), b, 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(filepath.Join("..", "..", "blobs", blob), filepath.Join(snap, name)); err != nil {
				t.Fatal(err)
			}
		}
		return snap
	}
	snapBase, snapAdapter := link(base, "abc"), link(adapterDir, "def")

	plain, linked := filepath.Join(t.TempDir(), "plain"), filepath.Join(t.TempDir(), "linked")
	if _, stderr, err := runCmd(t, "merge", "-base", base, "-adapter", adapterDir, "-out", plain); err != nil {
		t.Fatalf("%v\n%s", err, stderr)
	}
	stdout, stderr, err := runCmd(t, "merge", "-base", snapBase, "-adapter", snapAdapter, "-out", linked)
	if err != nil {
		t.Fatalf("%v\n%s", err, stderr)
	}
	want := []string{"chat_template.jinja", "config.json", "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors",
		indexName, "tiktoken.tiktoken", "tokenizer.json", "tokenizer.model", "vocab.txt"}
	if got := listDir(t, linked); !slices.Equal(got, want) {
		t.Errorf("wrote %v, want %v", got, want)
	}
	if !strings.Contains(stdout, "wrote 9 files") {
		t.Errorf("summary:\n%s", stdout)
	}
	if got := listDir(t, plain); !slices.Equal(got, want) {
		t.Errorf("the plain merge wrote %v, want %v", got, want)
	}
	for _, name := range want {
		fi, err := os.Lstat(filepath.Join(linked, name))
		if err != nil || !fi.Mode().IsRegular() {
			t.Errorf("%s: not a regular file (%v)", name, err)
			continue
		}
		a, _ := os.ReadFile(filepath.Join(plain, name))
		b, _ := os.ReadFile(filepath.Join(linked, name))
		if !bytes.Equal(a, b) || len(a) == 0 {
			t.Errorf("%s differs from the plain merge's (%d and %d bytes)", name, len(a), len(b))
		}
		if data, ok := sides[name]; ok && string(b) != data {
			t.Errorf("%s is not a copy", name)
		}
	}
	// A base given as a file: no side file.
	single := filepath.Join(t.TempDir(), "single")
	if _, stderr, err := runCmd(t, "merge", "-base", filepath.Join(snapBase, indexName), "-adapter", snapAdapter, "-out", single); err != nil {
		t.Fatalf("%v\n%s", err, stderr)
	}
	if got := listDir(t, single); !slices.Equal(got, outputFiles[1:]) {
		t.Errorf("a base given as its index wrote %v, want %v", got, outputFiles[1:])
	}
}

// TestMergeOutputRelative merges into a relative path, whose temporary
// directory goes beside it, and refuses "." and its parent: the working
// directory would be replaced by a rename.
func TestMergeOutputRelative(t *testing.T) {
	base, adapterDir := smallSetup(t, nil)
	dir := filepath.Join(t.TempDir(), "work")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Chdir(dir)
	for _, out := range []string{".", ".."} {
		_, _, err := runCmd(t, "merge", "-base", base, "-adapter", adapterDir, "-out", out, "-force")
		if err == nil || !strings.Contains(err.Error(), "holds the working directory") {
			t.Errorf("-out %s: %v", out, err)
		}
	}
	if _, stderr, err := runCmd(t, "merge", "-base", base, "-adapter", adapterDir, "-out", "sub/out/"); err != nil {
		t.Fatalf("%v\n%s", err, stderr)
	}
	if got := listDir(t, dir); !slices.Equal(got, []string{"sub"}) {
		t.Errorf(". holds %v", got)
	}
	if got := listDir(t, filepath.Join(dir, "sub")); !slices.Equal(got, []string{"out"}) {
		t.Errorf("sub holds %v", got)
	}
	if got := listDir(t, filepath.Join(dir, "sub", "out")); !slices.Equal(got, outputFiles) {
		t.Errorf("sub/out holds %v", got)
	}
}

// TestMergeOutSymlink checks that an -out that is a symbolic link is
// refused before any work, whether it names nothing or a directory, with
// -force or not: the output replaces -out by a rename, which would replace
// the link and leave its target as it was. The link, its target and the
// parent of -out are left as they were, and the adapter, which does not
// exist, is never read.
func TestMergeOutSymlink(t *testing.T) {
	base, _ := smallSetup(t, nil)
	for _, c := range []struct {
		name   string
		target string // "" for none
		args   []string
		err    string
	}{
		{name: "dangling", err: "which cannot be followed"},
		{name: "dangling -force", args: []string{"-force"}, err: "which cannot be followed"},
		{name: "to a directory", target: "old", err: "would replace the link"},
		{name: "to a directory -force", target: "old", args: []string{"-force"}, err: "would replace the link"},
		{name: "to an empty directory", target: "empty", err: "would replace the link"},
	} {
		t.Run(c.name, func(t *testing.T) {
			parent := t.TempDir()
			out := filepath.Join(parent, "out")
			old := filepath.Join(parent, "old")
			os.MkdirAll(filepath.Join(parent, "empty"), 0o755)
			if err := os.MkdirAll(old, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(old, "model.safetensors"), []byte("another model"), 0o644); err != nil {
				t.Fatal(err)
			}
			target := cmp.Or(c.target, "missing")
			if err := os.Symlink(target, out); err != nil {
				t.Fatal(err)
			}
			before := listDir(t, parent)
			args := append([]string{"merge", "-base", base, "-adapter", filepath.Join(parent, "no-adapter"), "-out", out}, c.args...)
			for _, o := range []string{out, out + "/"} {
				args[6] = o
				_, stderr, err := runCmd(t, args...)
				if err == nil || !strings.Contains(err.Error(), "-out "+o+" is a symbolic link to "+target) || !strings.Contains(err.Error(), c.err) {
					t.Errorf("-out %s: %v, want a refusal of the link that says %q\n%s", o, err, c.err, stderr)
				}
			}
			if got := listDir(t, parent); !slices.Equal(got, before) {
				t.Errorf("the parent of -out holds %v, want %v", got, before)
			}
			if l, err := os.Readlink(out); err != nil || l != target {
				t.Errorf("-out now links to %q (%v)", l, err)
			}
			if got := listDir(t, old); !slices.Equal(got, []string{"model.safetensors"}) {
				t.Errorf("the link's target holds %v", got)
			}
		})
	}
}
