package main

import (
	"fmt"
	"io"
	"os"
	"time"
)

// progress reports on stderr which step of the run is under way and about how
// long the rest will take. On a terminal it redraws one line in place; on
// anything else (a file, a pipe, a CI log) it writes one plain line per step,
// with no carriage return and no escape sequence.
type progress struct {
	w     io.Writer
	term  bool
	total int
	now   func() time.Time

	begun     time.Time // the whole run
	stepBegun time.Time // the step under way
	steps     int       // steps begun
	doneSecs  float64   // seconds the finished steps took
	doneEst   float64   // what the model estimated for them
	shown     bool      // a line is drawn on the terminal
}

// priorSecs is the weight, in seconds of steps, of the cost model's own
// estimates against the times measured so far.
const priorSecs = 5

// newProgress returns a progress report of total steps on w, drawn in place
// when w is a terminal.
func newProgress(w io.Writer, total int) *progress {
	p := &progress{w: w, term: isTerminal(w), total: total, now: time.Now}
	p.begun = p.now()
	return p
}

// isTerminal reports whether w is a character device other than a dumb
// terminal: the one place where redrawing a line in place makes sense.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok || os.Getenv("TERM") == "dumb" {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// step says that the next step, what, begins. finishedEst is the model's
// estimate of the step just finished and left its estimate of every step
// not yet finished, this one included, both in seconds; the time shown is
// left scaled by how far the finished steps ran over or under their
// estimates. left < 0 means unknown.
func (p *progress) step(what string, finishedEst, left float64) {
	t := p.now()
	if p.steps > 0 {
		p.doneSecs += t.Sub(p.stepBegun).Seconds()
		p.doneEst += finishedEst
	}
	p.steps++
	p.stepBegun = t
	line := fmt.Sprintf("[%d/%d] %s", p.steps, p.total, what)
	if left >= 0 {
		// How far the finished steps ran over or under their estimates,
		// damped by priorSecs of steps taken as estimated, so that a few
		// short steps cannot swing the estimate of the long ones.
		left *= (p.doneSecs + priorSecs) / (p.doneEst + priorSecs)
		line += ", about " + duration(left) + " left"
	}
	if p.term {
		fmt.Fprintf(p.w, "\r\033[K%s", line)
		p.shown = true
	} else {
		fmt.Fprintln(p.w, line)
	}
}

// clear removes the line drawn on the terminal, so that other output starts
// on a clean line; it does nothing to a plain log.
func (p *progress) clear() {
	if p.shown {
		fmt.Fprint(p.w, "\r\033[K")
		p.shown = false
	}
}

// finish clears the line and says how long the run took.
func (p *progress) finish() {
	p.clear()
	fmt.Fprintf(p.w, "measured in %s\n", duration(p.now().Sub(p.begun).Seconds()))
}

// duration formats seconds for a person: "40 s", "3 min 05 s".
func duration(sec float64) string {
	s := int(sec + 0.5)
	if s < 60 {
		return fmt.Sprintf("%d s", s)
	}
	return fmt.Sprintf("%d min %02d s", s/60, s%60)
}

// clearing is an io.Writer that clears the progress line before each write,
// so that table rows printed on the same terminal never follow its text.
type clearing struct {
	w io.Writer
	p *progress
}

func (c clearing) Write(b []byte) (int, error) {
	c.p.clear()
	return c.w.Write(b)
}
