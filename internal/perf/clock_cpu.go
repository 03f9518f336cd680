//go:build !cuda && !cudaemu

package perf

import "time"

// Device describes the GPU: none on the CPU backend.
func Device() (name string, peakBW float64, l2 int) { return "", 0, 0 }

// Clock times a batch of calls by wall time; the device time of the CPU
// backend is the same.
type Clock struct{ t0 time.Time }

// NewClock returns a Clock.
func NewClock() (*Clock, error) { return &Clock{}, nil }

// Start marks the beginning of a batch.
func (c *Clock) Start() error { c.t0 = time.Now(); return nil }

// Stop ends a batch and returns its wall seconds, twice.
func (c *Clock) Stop() (wall, device float64, err error) {
	wall = time.Since(c.t0).Seconds()
	return wall, wall, nil
}

// Close does nothing.
func (c *Clock) Close() {}
