package main

import (
	"fmt"
	"image/color"
	"os"
	"path/filepath"
	"slices"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

// palette: one colour per series, the same in every figure.
var palette = map[string]color.Color{
	"base":          color.RGBA{0x33, 0x33, 0x33, 0xff},
	"fused":         color.RGBA{0xd6, 0x27, 0x28, 0xff},
	"unfused":       color.RGBA{0x1f, 0x77, 0xb4, 0xff},
	"merged":        color.RGBA{0x2c, 0xa0, 0x2c, 0xff},
	"peer unmerged": color.RGBA{0xff, 0x7f, 0x0e, 0xff},
	"peer merged":   color.RGBA{0x94, 0x67, 0xbd, 0xff},
}

// figure is a plot being built: its series of points, in order of appearance.
type figure struct {
	p      *plot.Plot
	series map[string]plotter.XYs
	order  []string
}

func newFigure(title, xLabel, yLabel string, logX, logY bool) *figure {
	p := plot.New()
	p.Title.Text, p.X.Label.Text, p.Y.Label.Text = title, xLabel, yLabel
	if logX {
		p.X.Scale, p.X.Tick.Marker = plot.LogScale{}, plot.LogTicks{Prec: -1}
	}
	if logY {
		p.Y.Scale, p.Y.Tick.Marker = plot.LogScale{}, plot.LogTicks{Prec: -1}
	}
	p.Legend.Top, p.Legend.Left = true, true
	return &figure{p: p, series: map[string]plotter.XYs{}}
}

// add appends a point to the named series.
func (f *figure) add(name string, x, y float64) {
	if !slices.Contains(f.order, name) {
		f.order = append(f.order, name)
	}
	f.series[name] = append(f.series[name], plotter.XY{X: x, Y: y})
}

// save draws the series and writes the figure as a PNG file.
func (f *figure) save(path string) error {
	if err := addLines(f.p, f.series, f.order); err != nil {
		return err
	}
	if err := f.p.Save(18*vg.Centimeter, 12*vg.Centimeter, path); err != nil {
		return fmt.Errorf("plot %s: %w", filepath.Base(path), err)
	}
	return nil
}

// writePlots draws the report's figures into dir as PNG files and returns
// their paths:
//
//	forward-<in>.png    time per call against n (log-log), one line per path
//	overhead.png        Forward's overhead over the base product against r
//	merge.png           Merge throughput against r, with the streaming
//	                    bandwidth measured in the same run
func writePlots(dir string, rep *Report) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	var files []string
	save := func(f *figure, name string) error {
		path := filepath.Join(dir, name)
		files = append(files, path)
		return f.save(path)
	}
	machine := rep.Machine["cpu"]
	if d := rep.Machine["device"]; d != "" {
		machine = d
	}
	machine = fmt.Sprintf("%s, %s backend", machine, rep.Machine["backend"])

	// Time per call against n, at the middle rank measured.
	ranks := uniq(rep.Forward, func(r ForwardRow) int { return r.R })
	if len(ranks) == 0 {
		return nil, nil
	}
	rMid := ranks[len(ranks)/2]
	for _, in := range uniq(rep.Forward, func(r ForwardRow) int { return r.In }) {
		f := newFigure(fmt.Sprintf("Forward, in = out = %d, r = %d (%s)", in, rMid, machine),
			"batch n", "time per call (s)", true, true)
		for _, name := range []string{"base", "fused", "unfused", "merged"} {
			f.order = append(f.order, name) // fixed legend order
		}
		for _, r := range rep.Forward {
			if r.In != in || r.R != rMid {
				continue
			}
			x := float64(r.N)
			f.add("base", x, r.Base.Median)
			f.add("fused", x, r.Fused.Median)
			f.add("unfused", x, r.Unfused.Median)
			f.add("merged", x, r.Merged.Median)
			if r.PeerUnmerged > 0 {
				f.add("peer unmerged", x, r.PeerUnmerged)
				f.add("peer merged", x, r.PeerMerged)
			}
		}
		if err := save(f, fmt.Sprintf("forward-%d.png", in)); err != nil {
			return nil, err
		}
	}

	// Overhead against r, one line per (in, n), with 1× dashed.
	f := newFigure(fmt.Sprintf("Forward overhead over the base product (%s)", machine),
		"rank r", "fused ÷ base", true, false)
	for _, r := range rep.Forward {
		f.add(fmt.Sprintf("in=out=%d, n=%d", r.In, r.N), float64(r.R), r.Overhead)
	}
	one := plotter.NewFunction(func(float64) float64 { return 1 })
	one.Dashes = []vg.Length{vg.Points(4), vg.Points(4)}
	f.p.Add(one)
	if err := save(f, "overhead.png"); err != nil {
		return nil, err
	}

	// Merge throughput against r, beside the streaming bandwidth.
	if len(rep.Merge) > 0 {
		f := newFigure(fmt.Sprintf("Merge W ← W + s·B·A (%s)", machine),
			"rank r", "GB/s (W read and written once)", true, false)
		for _, r := range rep.Merge {
			x := float64(r.R)
			f.add(fmt.Sprintf("merge, %d×%d", r.Out, r.In), x, r.GBs)
			if r.StreamGBs > 0 {
				f.add(fmt.Sprintf("streaming pass, %d×%d", r.Out, r.In), x, r.StreamGBs)
			}
			if r.PeerMerge > 0 {
				f.add(fmt.Sprintf("peer merge, %d×%d", r.Out, r.In), x, float64(2*r.In*r.Out*4)/r.PeerMerge/1e9)
			}
		}
		f.p.Y.Min = 0
		f.p.Legend.Left = false // the lines start high at the left
		if err := save(f, "merge.png"); err != nil {
			return nil, err
		}
	}
	return files, nil
}

// addLines adds one line with points per series, in the given order.
func addLines(p *plot.Plot, series map[string]plotter.XYs, order []string) error {
	extra := []color.Color{
		color.RGBA{0x8c, 0x56, 0x4b, 0xff}, color.RGBA{0xe3, 0x77, 0xc2, 0xff},
		color.RGBA{0x7f, 0x7f, 0x7f, 0xff}, color.RGBA{0xbc, 0xbd, 0x22, 0xff},
		color.RGBA{0x17, 0xbe, 0xcf, 0xff},
	}
	for i, name := range order {
		xys, ok := series[name]
		if !ok || len(xys) == 0 {
			continue
		}
		slices.SortFunc(xys, func(a, b plotter.XY) int {
			switch {
			case a.X < b.X:
				return -1
			case a.X > b.X:
				return 1
			}
			return 0
		})
		line, points, err := plotter.NewLinePoints(xys)
		if err != nil {
			return err
		}
		c, ok := palette[name]
		if !ok {
			c = plotutilColor(i, extra)
		}
		line.Color, points.Color = c, c
		points.Shape = draw.CircleGlyph{}
		p.Add(line, points)
		p.Legend.Add(name, line, points)
	}
	return nil
}

func plotutilColor(i int, extra []color.Color) color.Color {
	base := []color.Color{palette["fused"], palette["unfused"], palette["merged"], palette["peer unmerged"], palette["peer merged"]}
	all := append(base, extra...)
	return all[i%len(all)]
}

// uniq returns the distinct values of key over rows, sorted.
func uniq(rows []ForwardRow, key func(ForwardRow) int) []int {
	var v []int
	for _, r := range rows {
		if !slices.Contains(v, key(r)) {
			v = append(v, key(r))
		}
	}
	slices.Sort(v)
	return v
}
