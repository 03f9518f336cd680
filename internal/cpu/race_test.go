//go:build race

package cpu

// raceBuild: the tests run under the race detector.
const raceBuild = true
