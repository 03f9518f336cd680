package tmpfile

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

func TestWrite(t *testing.T) {
	dir := t.TempDir()
	p, err := Write(dir, "x.json", func(f *os.File) error { _, err := f.WriteString("hello"); return err })
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Dir(p) != dir {
		t.Errorf("temporary file %s not in %s", p, dir)
	}
	b, err := os.ReadFile(p)
	if err != nil || string(b) != "hello" {
		t.Fatalf("read %q, %v", b, err)
	}
	if fi, _ := os.Stat(p); fi.Mode().Perm() != 0o644 {
		t.Errorf("mode %v, want 0644", fi.Mode().Perm())
	}

	boom := errors.New("boom")
	p, err = Write(dir, "y.json", func(f *os.File) error { f.WriteString("partial"); return boom })
	if !errors.Is(err, boom) || p != "" {
		t.Fatalf("Write = %q, %v; want \"\" and boom", p, err)
	}
	left, _ := filepath.Glob(filepath.Join(dir, ".y.json*"))
	if len(left) != 0 {
		t.Errorf("a failed Write left %v behind", left)
	}
}

func TestCreate(t *testing.T) {
	dir := t.TempDir()
	if err := Create(dir, "x.json", func(f *os.File) error { _, err := f.WriteString("hello"); return err }); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "x.json"))
	if err != nil || string(b) != "hello" {
		t.Fatalf("read %q, %v", b, err)
	}

	// An existing file is neither replaced nor removed.
	err = Create(dir, "x.json", func(f *os.File) error { t.Error("write called for an existing file"); return nil })
	if !errors.Is(err, fs.ErrExist) {
		t.Errorf("Create over an existing file: %v, want fs.ErrExist", err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "x.json")); string(b) != "hello" {
		t.Errorf("an existing file became %q", b)
	}

	boom := errors.New("boom")
	err = Create(dir, "y.json", func(f *os.File) error { f.WriteString("partial"); return boom })
	if !errors.Is(err, boom) || err.Error() != "writing y.json: boom" {
		t.Fatalf("Create = %v; want \"writing y.json: boom\"", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "y.json")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a failed Create left y.json behind: %v", err)
	}
}
