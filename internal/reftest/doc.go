// Package reftest is the test support every test package of the module
// shares: a float64 oracle of the layer's operations, a float64 model of
// the 16-bit formats, random operands, the error bounds of float32
// arithmetic, a comparison against those bounds, and a way to run a test in
// a process of its own.
//
// The oracle's loops are marked //go:norace and take Abs, not math.Abs:
// they run on one goroutine over operands no other goroutine writes, and
// under the race detector (make test-cpu) the instrumentation of their
// reads and of math.Abs's pointer conversion made up most of the time of
// the tests that call them. The code they check stays instrumented.
//
// It is for tests only: no package's non-test code may import it. It imports
// the standard library only, not package lora, whose own tests import it: it
// works on slices and plain parameters, and shares no code with what it
// checks, so that a result is always compared with something computed
// independently. TestOnlyTestsImport holds both rules.
//
// The oracle (Forward, Backward, Merge) computes in float64 from the
// operands as they are stored, and returns with every element the sum of
// the magnitudes of its terms, Σ|term|: the scale of the error of the same
// sum computed in float32, whatever the order of its terms. A test allows
// Gamma(k) of that magnitude for a float32 sum of k terms, and half an ulp
// of the output's format more for a final rounding (Tol, Rounded).
package reftest
