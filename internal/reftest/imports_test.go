package reftest

import (
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestOnlyTestsImport walks the module and fails if a file that is not a
// test imports this package, or if this package imports any package of the
// module: package lora's own tests import it, and what it checks it must
// not share code with.
func TestOnlyTestsImport(t *testing.T) {
	const self = "github.com/golora/lora/internal/reftest"
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	seen := 0
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := d.Name()
		if d.IsDir() {
			if path != root && (strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_") || name == "testdata") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(name, ".go") || strings.HasSuffix(name, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.ImportsOnly)
		if err != nil {
			return err
		}
		seen++
		inSelf := filepath.Dir(path) == filepath.Join(root, "internal", "reftest")
		for _, imp := range f.Imports {
			p, _ := strconv.Unquote(imp.Path.Value)
			switch {
			case p == self && !inSelf:
				t.Errorf("%s imports %s, which is for tests only", path, self)
			case inSelf && (p == "github.com/golora/lora" || strings.HasPrefix(p, "github.com/golora/lora/")):
				t.Errorf("%s imports %s: reftest takes the standard library only (package lora's tests import it)", path, p)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if seen < 20 {
		t.Errorf("read %d non-test files below %s: not the module's root", seen, root)
	}
}
