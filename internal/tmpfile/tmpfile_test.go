package tmpfile

import (
	"errors"
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
