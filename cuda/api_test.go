package cuda

import (
	"go/ast"
	"go/build"
	"go/parser"
	"go/token"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// exported returns the exported names, with a method as Type.Method, that
// the package's non-test files declare in a build with tags, and the names
// among them that have no doc comment.
func exported(t *testing.T, tags ...string) (names, undocumented []string) {
	t.Helper()
	ctx := build.Default
	ctx.BuildTags = tags
	ctx.CgoEnabled = true
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		if ok, err := ctx.MatchFile(".", f); err != nil || !ok {
			continue
		}
		af, err := parser.ParseFile(fset, f, nil, parser.ParseComments)
		if err != nil {
			t.Fatal(err)
		}
		add := func(name string, doc ...*ast.CommentGroup) {
			names = append(names, name)
			for _, d := range doc {
				if d != nil {
					return
				}
			}
			undocumented = append(undocumented, f+": "+name)
		}
		for _, d := range af.Decls {
			switch d := d.(type) {
			case *ast.FuncDecl:
				if !d.Name.IsExported() {
					continue
				}
				name := d.Name.Name
				if d.Recv != nil {
					typ := d.Recv.List[0].Type
					if s, ok := typ.(*ast.StarExpr); ok {
						typ = s.X
					}
					name = typ.(*ast.Ident).Name + "." + name
				}
				add(name, d.Doc)
			case *ast.GenDecl:
				for _, s := range d.Specs {
					switch s := s.(type) {
					case *ast.TypeSpec:
						if s.Name.IsExported() {
							add(s.Name.Name, d.Doc, s.Doc)
						}
					case *ast.ValueSpec:
						for _, n := range s.Names {
							if n.IsExported() {
								add(n.Name, d.Doc, s.Doc, s.Comment)
							}
						}
					}
				}
			}
		}
	}
	slices.Sort(names)
	return names, undocumented
}

// TestAPIInEveryBuild checks that the default build (which go doc shows)
// declares every exported name of the cuda and cudaemu builds, and the same
// ones, each with a doc comment.
func TestAPIInEveryBuild(t *testing.T) {
	def, undoc := exported(t)
	if len(undoc) > 0 {
		t.Errorf("exported names without a doc comment in the default build: %v", undoc)
	}
	if !slices.Contains(def, "Launch") || !slices.Contains(def, "Event.Since") {
		t.Fatalf("the default build declares %v: want the package's API", def)
	}
	for _, tag := range []string{"cuda", "cudaemu"} {
		got, undoc := exported(t, tag)
		if !slices.Equal(got, def) {
			t.Errorf("-tags %s declares %v,\nthe default build %v", tag, got, def)
		}
		if len(undoc) > 0 {
			t.Errorf("exported names without a doc comment with -tags %s: %v", tag, undoc)
		}
	}
}
