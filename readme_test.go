//go:build !cuda

// The cuda build's tests run on GPU machines, which have no Go toolchain:
// this test needs one, and runs in every other build.

package lora_test

import (
	"bytes"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// readmeFragmentVars declares, at package level, the names that the README's
// fragments use without declaring them: what a program around a fragment
// would already hold.
const readmeFragmentVars = `
var (
	w, wf, x, y, dy, dA, dB, target, a, b *lora.Matrix
	layer                                 *lora.Layer
	module                                *peft.Module
	out, in, steps                        int
	scale                                 float32
	ids                                   []int32
	codes                                 []byte
	absmax, transposed                    []float32
)

var (
	_ = fmt.Sprint
	_ = log.Fatal
	_ = lora.F32
	_ = peft.Prefix
)
`

// TestReadmeSnippets compiles every ```go block of README.md, offline, with
// the module's go.sum and build cache, in a temporary module that requires
// this one through a replace directive. The wrapping rule:
//
//   - a block that starts with "package" is a whole program, compiled as it
//     is, in a directory of its own;
//   - any other block is a fragment: it becomes the body of a function of
//     one package that imports fmt, log, lora and peft and declares, at
//     package level, the names of readmeFragmentVars (x, y, w, layer, ...),
//     and each variable the fragment declares at its top level gets a
//     "_ = name" at its end, since a fragment shows calls, not what a
//     program does with their results. A name a fragment uses that is
//     neither declared there nor in readmeFragmentVars fails the test.
//
// Errors are reported at README.md's lines (//line directives).
func TestReadmeSnippets(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command is not on PATH (go test puts GOROOT/bin there): %v", err)
	}
	root, err := filepath.Abs(".")
	if err != nil {
		t.Fatal(err)
	}
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	snippets := readmeGoBlocks(string(readme))
	if len(snippets) < 5 {
		t.Fatalf("README.md has %d go blocks: the extraction found too few", len(snippets))
	}

	dir := t.TempDir()
	write := func(name, text string) {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// The temporary module: this module's requirements, so that nothing is
	// resolved anew, and this module itself by a replace directive.
	gomod, err := os.ReadFile("go.mod")
	if err != nil {
		t.Fatal(err)
	}
	sum, err := os.ReadFile("go.sum")
	if err != nil {
		t.Fatal(err)
	}
	mod := strings.Replace(string(gomod), "module github.com/golora/lora", "module readme.example", 1)
	mod += fmt.Sprintf("\nrequire github.com/golora/lora v0.0.0\n\nreplace github.com/golora/lora => %s\n", root)
	write("go.mod", mod)
	write("go.sum", string(sum))

	var frag strings.Builder
	frag.WriteString("package fragments\n\nimport (\n\t\"fmt\"\n\t\"log\"\n\n\t\"github.com/golora/lora\"\n\t\"github.com/golora/lora/peft\"\n)\n")
	frag.WriteString(readmeFragmentVars)
	programs := 0
	for i, s := range snippets {
		if strings.HasPrefix(s.text, "package ") {
			programs++
			write(fmt.Sprintf("program%d/main.go", programs), fmt.Sprintf("//line README.md:%d\n%s", s.line, s.text))
			continue
		}
		body := fmt.Sprintf("//line README.md:%d\n%s", s.line, s.text)
		uses, err := fragmentDecls(body)
		if err != nil {
			t.Errorf("README.md:%d: the fragment does not parse as a function body: %v", s.line, err)
			continue
		}
		fmt.Fprintf(&frag, "\nfunc fragment%d() {\n%s", i, body)
		for _, name := range uses {
			fmt.Fprintf(&frag, "\t_ = %s\n", name)
		}
		frag.WriteString("}\n")
	}
	if programs == 0 {
		t.Error("README.md has no whole program: its first program is missing from the extraction")
	}
	write("fragments/fragments.go", frag.String())

	cmd := exec.Command(goTool, "build", "./...")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod -buildvcs=false", "GOPROXY=off", "GOSUMDB=off", "GOWORK=off", "GOTOOLCHAIN=local")
	var outBuf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &outBuf, &outBuf
	if err := cmd.Run(); err != nil {
		t.Errorf("the README's go blocks do not compile (%v):\n%s", err, outBuf.String())
	}
}

// readmeBlock is a ```go block of the README and the line its code starts on.
type readmeBlock struct {
	text string
	line int
}

// readmeGoBlocks returns the ```go blocks of a Markdown text.
func readmeGoBlocks(md string) []readmeBlock {
	var blocks []readmeBlock
	lines := strings.Split(md, "\n")
	for i := 0; i < len(lines); i++ {
		if strings.TrimSpace(lines[i]) != "```go" {
			continue
		}
		start := i + 1
		j := start
		for j < len(lines) && strings.TrimSpace(lines[j]) != "```" {
			j++
		}
		blocks = append(blocks, readmeBlock{strings.Join(lines[start:j], "\n") + "\n", start + 1})
		i = j
	}
	return blocks
}

// fragmentDecls parses body as the body of a function and returns the names
// its top-level statements declare (:= and var), "_" left out.
func fragmentDecls(body string) ([]string, error) {
	f, err := parser.ParseFile(token.NewFileSet(), "fragment.go", "package p\nfunc f() {\n"+body+"}\n", 0)
	if err != nil {
		return nil, err
	}
	var names []string
	seen := map[string]bool{}
	add := func(id *ast.Ident) {
		if id.Name != "_" && !seen[id.Name] {
			seen[id.Name] = true
			names = append(names, id.Name)
		}
	}
	for _, st := range f.Decls[0].(*ast.FuncDecl).Body.List {
		switch st := st.(type) {
		case *ast.AssignStmt:
			if st.Tok == token.DEFINE {
				for _, e := range st.Lhs {
					if id, ok := e.(*ast.Ident); ok {
						add(id)
					}
				}
			}
		case *ast.DeclStmt:
			if g, ok := st.Decl.(*ast.GenDecl); ok && g.Tok == token.VAR {
				for _, sp := range g.Specs {
					for _, id := range sp.(*ast.ValueSpec).Names {
						add(id)
					}
				}
			}
		}
	}
	return names, nil
}
