package reftest

import (
	"os"
	"strings"
	"testing"
)

// TestRunChild runs itself in a child process, which passes, and then, in
// subtests, in one that fails and in one whose test is skipped: RunChild
// must accept the first only.
func TestRunChild(t *testing.T) {
	switch os.Getenv("REFTEST_CHILD") {
	case "pass":
		return
	case "fail":
		t.Fatal("failing in the child, as asked")
	case "skip":
		t.Skip("skipping in the child, as asked")
	}
	RunChild(t, "REFTEST_CHILD=pass")
	for _, how := range []string{"fail", "skip"} {
		t.Run(how, func(t *testing.T) {
			r := &recorder{TB: t}
			RunChild(r, "REFTEST_CHILD="+how)
			if len(r.errs) != 1 || !strings.Contains(r.errs[0], "TestRunChild in a child process (REFTEST_CHILD="+how+")") {
				t.Errorf("RunChild of a child whose test does not pass: reported %q", r.errs)
			}
		})
	}
}

// TestChild checks the command: this binary, t's top-level test alone, the
// environment added.
func TestChild(t *testing.T) {
	t.Run("sub", func(t *testing.T) {
		cmd := Child(t, "A=1", "B=2")
		if cmd.Path != os.Args[0] && !strings.HasSuffix(cmd.Path, os.Args[0]) {
			t.Errorf("Path = %q, want this binary, %q", cmd.Path, os.Args[0])
		}
		if got := strings.Join(cmd.Args[1:], " "); got != "-test.run=^TestChild$ -test.count=1 -test.v" {
			t.Errorf("arguments %q", got)
		}
		if env := cmd.Env; len(env) < 2 || env[len(env)-2] != "A=1" || env[len(env)-1] != "B=2" {
			t.Errorf("environment ends %q", env[max(0, len(env)-2):])
		}
		if cmd.Process != nil {
			t.Error("Child started the command")
		}
	})
}
