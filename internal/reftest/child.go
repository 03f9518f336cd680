package reftest

import (
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
)

// Child returns a command, not yet started, that runs this test binary
// again in a process of its own, with env (KEY=value pairs) added to its
// environment and arguments that run t's top-level test alone, once,
// verbosely. It is for a test whose effects outlive it (a device fault
// lasts as long as the process; a peak of resident memory is the
// process's): the test runs its body in the child, which it tells from the
// parent by the environment. A binary whose TestMain does the child's work
// from the environment before parsing flags ignores the arguments.
func Child(t testing.TB, env ...string) *exec.Cmd {
	top, _, _ := strings.Cut(t.Name(), "/")
	cmd := exec.Command(os.Args[0], "-test.run=^"+regexp.QuoteMeta(top)+"$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), env...)
	return cmd
}

// RunChild runs Child(t, env...) to its end and fails t, with the child's
// output, unless t's top-level test ran and passed there. The caller
// returns after it: the test's body is the child's to run.
func RunChild(t testing.TB, env ...string) {
	t.Helper()
	top, _, _ := strings.Cut(t.Name(), "/")
	out, err := Child(t, env...).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--- PASS: "+top+" (") {
		t.Errorf("%s in a child process (%s): %v\n%s", top, strings.Join(env, " "), err, out)
	}
}
