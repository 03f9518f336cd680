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
	save := func(p *plot.Plot, name string, w, h vg.Length) error {
		path := filepath.Join(dir, name)
		if err := p.Save(w, h, path); err != nil {
			return fmt.Errorf("plot %s: %w", name, err)
		}
		files = append(files, path)
		return nil
	}
	machine := rep.Machine["cpu"]
	if d := rep.Machine["device"]; d != "" {
		machine = d
	}
	machine = fmt.Sprintf("%s, %s backend", machine, rep.Machine["backend"])

	// Time per call against n, at the middle rank measured.
	ins := uniq(rep.Forward, func(r ForwardRow) int { return r.In })
	ranks := uniq(rep.Forward, func(r ForwardRow) int { return r.R })
	if len(ranks) == 0 {
		return nil, nil
	}
	rMid := ranks[len(ranks)/2]
	for _, in := range ins {
		p := plot.New()
		p.Title.Text = fmt.Sprintf("Forward, in = out = %d, r = %d (%s)", in, rMid, machine)
		p.X.Label.Text = "batch n"
		p.Y.Label.Text = "time per call (s)"
		p.X.Scale, p.Y.Scale = plot.LogScale{}, plot.LogScale{}
		p.X.Tick.Marker, p.Y.Tick.Marker = plot.LogTicks{Prec: -1}, plot.LogTicks{Prec: -1}
		p.Legend.Top, p.Legend.Left = true, true
		series := map[string]plotter.XYs{}
		for _, r := range rep.Forward {
			if r.In != in || r.R != rMid {
				continue
			}
			x := float64(r.N)
			series["base"] = append(series["base"], plotter.XY{X: x, Y: r.Base.Median})
			series["fused"] = append(series["fused"], plotter.XY{X: x, Y: r.Fused.Median})
			series["unfused"] = append(series["unfused"], plotter.XY{X: x, Y: r.Unfused.Median})
			series["merged"] = append(series["merged"], plotter.XY{X: x, Y: r.Merged.Median})
			if r.PeerUnmerged > 0 {
				series["peer unmerged"] = append(series["peer unmerged"], plotter.XY{X: x, Y: r.PeerUnmerged})
				series["peer merged"] = append(series["peer merged"], plotter.XY{X: x, Y: r.PeerMerged})
			}
		}
		if err := addLines(p, series, []string{"base", "fused", "unfused", "merged", "peer unmerged", "peer merged"}); err != nil {
			return nil, err
		}
		if err := save(p, fmt.Sprintf("forward-%d.png", in), 18*vg.Centimeter, 12*vg.Centimeter); err != nil {
			return nil, err
		}
	}

	// Overhead against r, one line per (in, n).
	p := plot.New()
	p.Title.Text = fmt.Sprintf("Forward overhead over the base product (%s)", machine)
	p.X.Label.Text = "rank r"
	p.Y.Label.Text = "fused ÷ base"
	p.X.Scale = plot.LogScale{}
	p.X.Tick.Marker = plot.LogTicks{Prec: -1}
	p.Legend.Top, p.Legend.Left = true, true
	series := map[string]plotter.XYs{}
	var order []string
	for _, r := range rep.Forward {
		key := fmt.Sprintf("in=out=%d, n=%d", r.In, r.N)
		if _, ok := series[key]; !ok {
			order = append(order, key)
		}
		series[key] = append(series[key], plotter.XY{X: float64(r.R), Y: r.Overhead})
	}
	if err := addLines(p, series, order); err != nil {
		return nil, err
	}
	one := plotter.NewFunction(func(float64) float64 { return 1 })
	one.Dashes = []vg.Length{vg.Points(4), vg.Points(4)}
	p.Add(one)
	if err := save(p, "overhead.png", 18*vg.Centimeter, 12*vg.Centimeter); err != nil {
		return nil, err
	}

	// Merge throughput against r, beside the streaming bandwidth.
	if len(rep.Merge) > 0 {
		p := plot.New()
		p.Title.Text = fmt.Sprintf("Merge W ← W + s·B·A (%s)", machine)
		p.X.Label.Text = "rank r"
		p.Y.Label.Text = "GB/s (W read and written once)"
		p.X.Scale = plot.LogScale{}
		p.X.Tick.Marker = plot.LogTicks{Prec: -1}
		p.Legend.Top = true
		series := map[string]plotter.XYs{}
		var order []string
		add := func(key string, xy plotter.XY) {
			if _, ok := series[key]; !ok {
				order = append(order, key)
			}
			series[key] = append(series[key], xy)
		}
		for _, r := range rep.Merge {
			add(fmt.Sprintf("merge, %d×%d", r.Out, r.In), plotter.XY{X: float64(r.R), Y: r.GBs})
			if r.StreamGBs > 0 {
				add(fmt.Sprintf("streaming pass, %d×%d", r.Out, r.In), plotter.XY{X: float64(r.R), Y: r.StreamGBs})
			}
			if r.PeerMerge > 0 {
				add(fmt.Sprintf("peer merge, %d×%d", r.Out, r.In), plotter.XY{X: float64(r.R), Y: float64(2*r.In*r.Out*4) / r.PeerMerge / 1e9})
			}
		}
		if err := addLines(p, series, order); err != nil {
			return nil, err
		}
		p.Y.Min = 0
		if err := save(p, "merge.png", 18*vg.Centimeter, 12*vg.Centimeter); err != nil {
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
