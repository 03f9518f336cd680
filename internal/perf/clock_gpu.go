//go:build cuda || cudaemu

package perf

import (
	"time"

	"github.com/golora/lora"
	"github.com/golora/lora/cuda"
)

// Device describes the GPU: its name, nominal memory bandwidth in bytes/s
// and L2 size (0 where unknown, as on the emulator).
func Device() (name string, peakBW float64, l2 int) {
	return cuda.DeviceName(), cuda.PeakBandwidth(), cuda.L2Bytes()
}

// Clock times a batch of calls by wall time (host side included) and by
// CUDA events recorded on the stream around the batch (device time).
type Clock struct {
	start, stop *cuda.Event
	t0          time.Time
}

// NewClock returns a Clock with its two events.
func NewClock() (*Clock, error) {
	a, err := cuda.NewEvent()
	if err != nil {
		return nil, err
	}
	b, err := cuda.NewEvent()
	if err != nil {
		a.Destroy()
		return nil, err
	}
	return &Clock{start: a, stop: b}, nil
}

// Start marks the beginning of a batch.
func (c *Clock) Start() error {
	c.t0 = time.Now()
	return c.start.Record()
}

// Stop ends a batch: it waits for the batch's work and returns its wall and
// device seconds.
func (c *Clock) Stop() (wall, device float64, err error) {
	if err := c.stop.Record(); err != nil {
		return 0, 0, err
	}
	if err := lora.Sync(); err != nil {
		return 0, 0, err
	}
	wall = time.Since(c.t0).Seconds()
	device, err = c.stop.Since(c.start)
	return wall, device, err
}

// Close releases the events.
func (c *Clock) Close() {
	c.start.Destroy()
	c.stop.Destroy()
}
