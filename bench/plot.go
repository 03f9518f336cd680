package main

import (
	"fmt"
	"image/color"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

// Names of the series: the same name, the same colour in every figure.
const (
	seriesBase         = "base product x·Wᵀ"
	seriesFused        = "Forward (fused)"
	seriesUnfused      = "unfused: x·Wᵀ, (x·Aᵀ)·Bᵀ, add"
	seriesMerged       = "Forward after Merge"
	seriesPeerUnmerged = "PyTorch unmerged (as PEFT)"
	seriesPeerMerged   = "PyTorch merged (as PEFT)"
	seriesFusedBF16    = "Forward (fused), bf16"
	seriesPeerBF16     = "PyTorch unmerged (as PEFT), bf16"
)

// palette: one colour per series, the same in every figure.
var palette = map[string]color.Color{
	seriesBase:         color.RGBA{0x33, 0x33, 0x33, 0xff},
	seriesFused:        color.RGBA{0xd6, 0x27, 0x28, 0xff},
	seriesUnfused:      color.RGBA{0x1f, 0x77, 0xb4, 0xff},
	seriesMerged:       color.RGBA{0x2c, 0xa0, 0x2c, 0xff},
	seriesPeerUnmerged: color.RGBA{0xff, 0x7f, 0x0e, 0xff},
	seriesPeerMerged:   color.RGBA{0x94, 0x67, 0xbd, 0xff},
	seriesFusedBF16:    color.RGBA{0xe3, 0x77, 0xc2, 0xff},
	seriesPeerBF16:     color.RGBA{0x8c, 0x56, 0x4b, 0xff},
}

// figure is a plot being built: its series of points, in order of appearance,
// and legend entries for lines that are not series.
type figure struct {
	p      *plot.Plot
	series map[string]plotter.XYs
	order  []string
	extra  []legendEntry
	logX   bool
	yTicks plot.Ticker // nil: nice linear ticks
}

type legendEntry struct {
	name  string
	thumb plot.Thumbnailer
}

// newFigure starts a figure. A log x axis is ticked at the x values of the
// data; a log y axis in 1-2-5 steps of time per call.
func newFigure(title, xLabel, yLabel string, logX, logY bool) *figure {
	p := plot.New()
	p.Title.Text, p.X.Label.Text, p.Y.Label.Text = title, xLabel, yLabel
	f := &figure{p: p, series: map[string]plotter.XYs{}, logX: logX}
	if logX {
		p.X.Scale = plot.LogScale{}
	}
	if logY {
		p.Y.Scale, f.yTicks = plot.LogScale{}, timeTicks{}
	}
	return f
}

// add appends a point to the named series.
func (f *figure) add(name string, x, y float64) {
	if !slices.Contains(f.order, name) {
		f.order = append(f.order, name)
	}
	f.series[name] = append(f.series[name], plotter.XY{X: x, Y: y})
}

// Size of a figure: the plot, and the legend to its right, outside the data.
const (
	figWidth  = 26 * vg.Centimeter
	figHeight = 12 * vg.Centimeter
)

// save draws the series, with the legend to the right of the plot where it
// cannot cover data, and writes the figure as a PNG file.
func (f *figure) save(path string) error {
	leg := plot.NewLegend()
	leg.Top, leg.Left = true, true
	if err := addLines(f.p, &leg, f.series, f.order); err != nil {
		return err
	}
	for _, e := range f.extra {
		leg.Add(e.name, e.thumb)
	}
	var xs []float64
	for _, xys := range f.series {
		for _, xy := range xys {
			xs = append(xs, xy.X)
		}
	}
	if f.logX {
		f.p.X.Tick.Marker = dataTicks(xs)
	} else {
		f.p.X.Tick.Marker = niceTicks{}
	}
	if f.yTicks != nil {
		f.p.Y.Tick.Marker = f.yTicks
	} else {
		f.p.Y.Tick.Marker = niceTicks{}
	}
	f.fitY()
	grid := plotter.NewGrid()
	grid.Vertical.Color = color.Gray{Y: 0xd8}
	grid.Horizontal.Color = color.Gray{Y: 0xd8}
	f.p.Add(grid)

	c, err := draw.NewFormattedCanvas(figWidth, figHeight, "png")
	if err != nil {
		return err
	}
	dc := draw.New(c)
	pad := vg.Points(12)
	legWidth := leg.Rectangle(dc).Size().X + pad
	f.p.Draw(draw.Crop(dc, 0, -legWidth, 0, 0))
	titleHeight := f.p.Title.TextStyle.Rectangle(f.p.Title.Text).Size().Y + f.p.Title.Padding + pad
	leg.Draw(draw.Crop(dc, figWidth-legWidth+pad/2, 0, 0, -titleHeight))

	file, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("plot %s: %w", filepath.Base(path), err)
	}
	if _, err := c.WriteTo(file); err != nil {
		file.Close()
		return fmt.Errorf("plot %s: %w", filepath.Base(path), err)
	}
	return file.Close()
}

// fitY widens the y axis to the ticks around its data, so that both ends
// of the data have a labelled tick beyond them.
func (f *figure) fitY() {
	y := &f.p.Y
	if !(y.Max >= y.Min) || math.IsInf(y.Max-y.Min, 0) {
		return
	}
	if f.yTicks != nil {
		if y.Min > 0 {
			y.Min, y.Max = down125(y.Min), up125(y.Max)
		}
		return
	}
	if y.Max == y.Min {
		y.Min, y.Max = y.Min-1, y.Max+1
	}
	for range 3 { // a wider range may want a wider step
		step, _ := niceStep(y.Max - y.Min)
		y.Min = math.Floor(y.Min/step+1e-9) * step
		y.Max = math.Ceil(y.Max/step-1e-9) * step
	}
}

// down125 and up125 round v > 0 down and up to 1, 2 or 5 times a power of ten.
func down125(v float64) float64 {
	e := math.Floor(math.Log10(v))
	for _, m := range []float64{5, 2, 1} {
		if m*math.Pow(10, e) <= v*(1+1e-9) {
			return m * math.Pow(10, e)
		}
	}
	return math.Pow(10, e-1) * 5
}

func up125(v float64) float64 {
	e := math.Floor(math.Log10(v))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*math.Pow(10, e) >= v*(1-1e-9) {
			return m * math.Pow(10, e)
		}
	}
	return math.Pow(10, e+1)
}

// dataTicks ticks an axis at the given values, each labelled.
func dataTicks(xs []float64) plot.ConstantTicks {
	var ticks plot.ConstantTicks
	seen := map[float64]bool{}
	slices.Sort(xs)
	for _, x := range xs {
		if !seen[x] {
			seen[x] = true
			ticks = append(ticks, plot.Tick{Value: x, Label: strconv.FormatFloat(x, 'g', -1, 64)})
		}
	}
	return ticks
}

// niceTicks ticks a linear axis every 1, 2, 2.5 or 5 times a power of ten,
// the smallest such step that leaves at most 8 intervals in the range (so
// 4 to 9 ticks), each labelled with the decimals its step needs.
type niceTicks struct{}

func (niceTicks) Ticks(lo, hi float64) []plot.Tick {
	if !(hi > lo) || math.IsInf(hi-lo, 0) {
		return []plot.Tick{{Value: lo, Label: strconv.FormatFloat(lo, 'g', 4, 64)}}
	}
	step, decimals := niceStep(hi - lo)
	var ticks []plot.Tick
	for i := math.Ceil(lo/step - 1e-9); i*step <= hi+step*1e-9; i++ {
		v := i * step
		if v == 0 {
			v = 0 // not -0
		}
		ticks = append(ticks, plot.Tick{Value: v, Label: strconv.FormatFloat(v, 'f', decimals, 64)})
	}
	return ticks
}

// niceStep returns the step of niceTicks over span, and the decimals its
// labels need.
func niceStep(span float64) (step float64, decimals int) {
	exp := math.Floor(math.Log10(span / 4))
	for {
		for _, m := range []float64{1, 2, 2.5, 5} {
			step = m * math.Pow(10, exp)
			if span/step <= 8+1e-9 {
				decimals = max(0, -int(exp))
				if m == 2.5 {
					decimals++
				}
				return step, decimals
			}
		}
		exp++
	}
}

// timeTicks ticks a log axis of seconds at 1, 2 and 5 times each power of
// ten, labelled in µs, ms or s (over more than four decades only the powers
// of ten are labelled), with unlabelled ticks at the other multiples.
type timeTicks struct{}

func (timeTicks) Ticks(lo, hi float64) []plot.Tick {
	if !(lo > 0) || !(hi >= lo) {
		return nil
	}
	first, last := int(math.Floor(math.Log10(lo))), int(math.Ceil(math.Log10(hi)))
	sparse := last-first > 4
	var ticks []plot.Tick
	for e := first; e <= last; e++ {
		for m := 1; m <= 9; m++ {
			v := float64(m) * math.Pow10(e)
			if v < lo*(1-1e-9) || v > hi*(1+1e-9) {
				continue
			}
			t := plot.Tick{Value: v}
			if m == 1 || !sparse && (m == 2 || m == 5) {
				t.Label = timeLabel(m, e)
			}
			ticks = append(ticks, t)
		}
	}
	return ticks
}

// timeLabel formats m·10^e seconds: "2 µs", "50 ms", "1 s".
func timeLabel(m, e int) string {
	unit, shift := "s", 0
	switch {
	case e < -6:
		unit, shift = "ns", 9
	case e < -3:
		unit, shift = "µs", 6
	case e < 0:
		unit, shift = "ms", 3
	}
	return strconv.FormatFloat(float64(m)*math.Pow10(e+shift), 'f', -1, 64) + " " + unit
}

// blasName names the BLAS of a CPU run: "gonum" (the default build) or
// "OpenBLAS" (-tags openblas, through gonum's netlib binding).
func blasName(impl string) string {
	switch impl {
	case "gonum.Implementation":
		return "gonum"
	case "netlib.Implementation":
		return "OpenBLAS"
	}
	return impl
}

// writePlots draws the report's figures into dir as PNG files and returns
// their paths:
//
//	forward-<in>.png    time per call against n (log-log), one line per path,
//	                    and the bf16 fused Forward where measured
//	overhead.png        Forward's overhead over the base product against r
//	                    (f32 rows)
//	merge.png           Merge throughput against r, f32 and bf16, with the
//	                    streaming bandwidth measured in the same run
func writePlots(dir string, rep *Report) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	var files []string
	for _, nf := range figures(rep) {
		path := filepath.Join(dir, nf.file)
		files = append(files, path)
		if err := nf.f.save(path); err != nil {
			return nil, err
		}
	}
	return files, nil
}

// namedFigure is a figure and the name of its file.
type namedFigure struct {
	file string
	f    *figure
}

// figures builds the report's figures, named as writePlots saves them.
func figures(rep *Report) []namedFigure {
	var out []namedFigure
	save := func(f *figure, name string) { out = append(out, namedFigure{name, f}) }
	machine := rep.Machine["cpu"]
	if d := rep.Machine["device"]; d != "" {
		machine = d
	}
	machine = fmt.Sprintf("%s, %s backend", machine, rep.Machine["backend"])
	if rep.Machine["backend"] == "cpu" && rep.Machine["blas"] != "" {
		machine += ", " + blasName(rep.Machine["blas"])
	}

	// Time per call against n, at the middle rank measured.
	ranks := uniq(rep.Forward, func(r ForwardRow) int { return r.R })
	if len(ranks) == 0 {
		return nil
	}
	rMid := ranks[len(ranks)/2]
	for _, in := range uniq(rep.Forward, func(r ForwardRow) int { return r.In }) {
		f := newFigure(fmt.Sprintf("Forward, in = out = %d, r = %d (%s)", in, rMid, machine),
			"batch n (log scale)", "time per call (log scale)", true, true)
		f.order = append(f.order, seriesBase, seriesFused, seriesUnfused, seriesMerged) // fixed legend order
		for _, r := range rep.Forward {
			if r.In != in || r.R != rMid {
				continue
			}
			x := float64(r.N)
			if rowDType(r.DType) != dtF32 {
				// bf16: the fused Forward, beside f32's.
				f.add(seriesFusedBF16, x, r.Fused.Median)
				if r.PeerUnmerged > 0 {
					f.add(seriesPeerBF16, x, r.PeerUnmerged)
				}
				continue
			}
			f.add(seriesBase, x, r.Base.Median)
			f.add(seriesFused, x, r.Fused.Median)
			f.add(seriesUnfused, x, r.Unfused.Median)
			f.add(seriesMerged, x, r.Merged.Median)
			if r.PeerUnmerged > 0 {
				f.add(seriesPeerUnmerged, x, r.PeerUnmerged)
				f.add(seriesPeerMerged, x, r.PeerMerged)
			}
		}
		save(f, fmt.Sprintf("forward-%d.png", in))
	}

	// Overhead against r, one line per (in, n), with 1× dashed.
	f := newFigure(fmt.Sprintf("Forward overhead over the base product (%s)", machine),
		"rank r (log scale)", "Forward (fused) ÷ base product", true, false)
	for _, r := range rep.Forward {
		if rowDType(r.DType) == dtF32 {
			f.add(fmt.Sprintf("in=out=%d, n=%d", r.In, r.N), float64(r.R), r.Overhead)
		}
	}
	one := plotter.NewFunction(func(float64) float64 { return 1 })
	one.Dashes = []vg.Length{vg.Points(4), vg.Points(4)}
	f.p.Add(one)
	f.extra = append(f.extra, legendEntry{"1× = no overhead", one})
	f.p.Y.Min = min(f.p.Y.Min, 1) // the 1× line in view
	save(f, "overhead.png")

	// Merge throughput against r, beside the streaming bandwidth.
	if len(rep.Merge) > 0 {
		f := newFigure(fmt.Sprintf("Merge W ← W + s·B·A (%s)", machine),
			"rank r (log scale)", "GB/s (W read and written once)", true, false)
		for _, r := range rep.Merge {
			x := float64(r.R)
			dt, size := "", 4
			if d := rowDType(r.DType); d != dtF32 {
				dt, size = " "+d, 2
			}
			f.add(fmt.Sprintf("merge%s, %d×%d", dt, r.Out, r.In), x, r.GBs)
			if r.StreamGBs > 0 {
				f.add(fmt.Sprintf("streaming pass, %d×%d", r.Out, r.In), x, r.StreamGBs)
			}
			if r.PeerMerge > 0 {
				f.add(fmt.Sprintf("PyTorch merge (as PEFT)%s, %d×%d", dt, r.Out, r.In), x, float64(2*r.In*r.Out*size)/r.PeerMerge/1e9)
			}
		}
		f.p.Y.Min = 0
		save(f, "merge.png")
	}
	return out
}

// addLines adds one line with points per series, in the given order, and
// its entry in leg.
func addLines(p *plot.Plot, leg *plot.Legend, series map[string]plotter.XYs, order []string) error {
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
		leg.Add(name, line, points)
	}
	return nil
}

func plotutilColor(i int, extra []color.Color) color.Color {
	base := []color.Color{palette[seriesFused], palette[seriesUnfused], palette[seriesMerged], palette[seriesPeerUnmerged], palette[seriesPeerMerged]}
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
