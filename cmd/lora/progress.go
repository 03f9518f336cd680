package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"
)

// progress reports tensors and bytes written, the rate and the time left.
// On a terminal it redraws one line in place, at most ten times a second;
// elsewhere (a log, a pipe) it prints a line at every tenth of the work, at
// most every two seconds, and a last line at the end.
type progress struct {
	w                 io.Writer
	tty               bool
	start, last       time.Time
	tensors, nTensors int
	bytes, nBytes     int64
	lastTenth         int64
}

func newProgress(w io.Writer, nTensors int, nBytes int64) *progress {
	now := time.Now()
	return &progress{w: w, tty: isTerminal(w), start: now, last: now, nTensors: nTensors, nBytes: max(nBytes, 1)}
}

// isTerminal reports whether w is a character device, such as a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0 && os.Getenv("TERM") != "dumb"
}

// add records bytes written, completing some tensors.
func (p *progress) add(tensors int, n int64) {
	p.tensors += tensors
	p.bytes += n
	now := time.Now()
	if p.tty {
		if now.Sub(p.last) >= 100*time.Millisecond {
			p.last = now
			p.draw(now)
		}
		return
	}
	tenth := 10 * p.bytes / p.nBytes
	if tenth > p.lastTenth && now.Sub(p.last) >= 2*time.Second {
		p.last, p.lastTenth = now, tenth
		fmt.Fprintln(p.w, p.line(now))
	}
}

// finish draws the final state.
func (p *progress) finish() {
	now := time.Now()
	if p.tty {
		p.draw(now)
		fmt.Fprintln(p.w)
		return
	}
	fmt.Fprintln(p.w, p.line(now))
}

func (p *progress) draw(now time.Time) {
	const width = 24
	fill := int(width * p.bytes / p.nBytes)
	bar := strings.Repeat("=", fill) + strings.Repeat(" ", width-fill)
	fmt.Fprintf(p.w, "\r\x1b[K[%s] %s", bar, p.line(now))
}

func (p *progress) line(now time.Time) string {
	secs := now.Sub(p.start).Seconds()
	rate := 0.0
	if secs > 0 {
		rate = float64(p.bytes) / secs
	}
	left := "?"
	if rate > 0 {
		left = (time.Duration(float64(p.nBytes-p.bytes)/rate*1e9) * time.Nanosecond).Round(time.Second).String()
	}
	return fmt.Sprintf("%3d%%  %d/%d tensors  %s/%s  %.2f GB/s  %s left",
		100*p.bytes/p.nBytes, p.tensors, p.nTensors, formatBytes(p.bytes), formatBytes(p.nBytes), rate/1e9, left)
}
