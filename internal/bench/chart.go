package bench

import (
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"io"
	"math"
	"strconv"
)

// Chart colors: one per endpoint, the limit, and the frame.
var (
	colClear  = color.RGBA{31, 119, 180, 255}
	colRecall = color.RGBA{255, 127, 14, 255}
	colModify = color.RGBA{44, 160, 44, 255}
	colLimit  = color.RGBA{214, 39, 40, 255}
	colAxis   = color.RGBA{40, 40, 40, 255}
	colGrid   = color.RGBA{225, 225, 225, 255}
	colSep    = color.RGBA{150, 150, 150, 255}
	colWhite  = color.RGBA{255, 255, 255, 255}
)

// Chart geometry in pixels.
const (
	chartW      = 1400
	chartH      = 620
	marginLeft  = 80
	marginRight = 30
	marginTop   = 110
	marginBot   = 80
	runGap      = 4 // seconds of blank space between runs
)

// drawChart draws the runs' calls per second per endpoint side by side on
// one time axis (each run starting at its own second 0, separated by a gap
// and labelled), with the API limit as a dashed horizontal line.
func drawChart(runs []series, limit int) *image.RGBA {
	img := image.NewRGBA(image.Rect(0, 0, chartW, chartH))
	draw.Draw(img, img.Bounds(), &image.Uniform{colWhite}, image.Point{}, draw.Src)
	plot := image.Rect(marginLeft, marginTop, chartW-marginRight, chartH-marginBot)

	total, peak := 0, int64(limit)
	for i, r := range runs {
		if i > 0 {
			total += runGap
		}
		total += max(r.seconds(), 1)
		for _, s := range [][]int64{r.Clear, r.Recall, r.Modify} {
			for _, v := range s {
				peak = max(peak, v)
			}
		}
	}
	total = max(total, 1)
	yMax := int(math.Ceil(float64(peak)*1.15/50)) * 50
	xOf := func(sec float64) int { return plot.Min.X + int(sec*float64(plot.Dx())/float64(total)) }
	yOf := func(v float64) int { return plot.Max.Y - int(v*float64(plot.Dy())/float64(yMax)) }

	title := fmt.Sprintf("API calls per second per endpoint (emulator), limit %d/s", limit)
	drawText(img, (chartW-textWidth(title, 2))/2, 14, title, colAxis, 2)

	// Horizontal grid and y labels every 50 calls.
	for v := 0; v <= yMax; v += 50 {
		y := yOf(float64(v))
		hline(img, plot.Min.X, plot.Max.X, y, colGrid, false)
		lbl := strconv.Itoa(v)
		drawText(img, plot.Min.X-10-textWidth(lbl, 2), y-textHeight(2)/2, lbl, colAxis, 2)
	}
	ylbl := "calls/s"
	drawText(img, 8, plot.Min.Y-28, ylbl, colAxis, 2)

	// Runs: separators, labels, x ticks, lines.
	off := 0
	for i, r := range runs {
		if i > 0 {
			off += runGap
			x := xOf(float64(off) - float64(runGap)/2)
			vline(img, x, plot.Min.Y, plot.Max.Y, colSep, true)
		}
		n := max(r.seconds(), 1)
		cx := xOf(float64(off) + float64(n)/2)
		lbl, scale := r.Run, 2
		if textWidth(lbl, scale) > xOf(float64(off+n))-xOf(float64(off)) {
			scale = 1
		}
		for textWidth(lbl, scale) > xOf(float64(off+n))-xOf(float64(off)) && len(lbl) > 1 {
			lbl = lbl[:len(lbl)-1]
		}
		drawText(img, cx-textWidth(lbl, scale)/2, plot.Min.Y-8-textHeight(scale), lbl, colAxis, scale)
		step := 10
		if n > 60 {
			step = 20
		}
		for s := 0; s <= n; s += step {
			x := xOf(float64(off + s))
			vline(img, x, plot.Max.Y, plot.Max.Y+6, colAxis, false)
			t := strconv.Itoa(s)
			drawText(img, x-textWidth(t, 2)/2, plot.Max.Y+10, t, colAxis, 2)
		}
		for _, l := range []struct {
			s []int64
			c color.RGBA
		}{{r.Clear, colClear}, {r.Recall, colRecall}, {r.Modify, colModify}} {
			for j := 1; j < len(l.s); j++ {
				line(img, xOf(float64(off+j-1)+0.5), yOf(float64(l.s[j-1])), xOf(float64(off+j)+0.5), yOf(float64(l.s[j])), l.c)
			}
		}
		off += n
	}
	xl := "seconds from each run's first call"
	drawText(img, (plot.Min.X+plot.Max.X-textWidth(xl, 2))/2, chartH-30, xl, colAxis, 2)

	// The limit, dashed, over the lines.
	hline(img, plot.Min.X, plot.Max.X, yOf(float64(limit)), colLimit, true)
	hline(img, plot.Min.X, plot.Max.X, yOf(float64(limit))+1, colLimit, true)

	// Axes.
	vline(img, plot.Min.X, plot.Min.Y, plot.Max.Y, colAxis, false)
	hline(img, plot.Min.X, plot.Max.X, plot.Max.Y, colAxis, false)

	// Legend, one row above the plot.
	x := plot.Min.X
	y := 50
	for _, e := range []struct {
		name string
		c    color.RGBA
	}{{"clear_group_msg", colClear}, {"group_msg_recall", colRecall}, {"modify_group_msg", colModify}, {fmt.Sprintf("limit %d/s", limit), colLimit}} {
		fillRect(img, image.Rect(x, y, x+28, y+14), e.c)
		drawText(img, x+36, y, e.name, colAxis, 2)
		x += 36 + textWidth(e.name, 2) + 40
	}
	return img
}

// writePNG encodes img as PNG.
func writePNG(w io.Writer, img image.Image) error { return png.Encode(w, img) }

func fillRect(img *image.RGBA, r image.Rectangle, c color.Color) {
	draw.Draw(img, r.Intersect(img.Bounds()), &image.Uniform{c}, image.Point{}, draw.Src)
}

// hline and vline draw one-pixel lines, dashed (6 on, 4 off) if asked.
func hline(img *image.RGBA, x0, x1, y int, c color.Color, dashed bool) {
	for x := x0; x <= x1; x++ {
		if !dashed || (x-x0)%10 < 6 {
			img.Set(x, y, c)
		}
	}
}

func vline(img *image.RGBA, x, y0, y1 int, c color.Color, dashed bool) {
	for y := y0; y <= y1; y++ {
		if !dashed || (y-y0)%10 < 6 {
			img.Set(x, y, c)
		}
	}
}

// line draws a two-pixel-wide line from (x0,y0) to (x1,y1) (Bresenham).
func line(img *image.RGBA, x0, y0, x1, y1 int, c color.Color) {
	dx, dy := abs(x1-x0), -abs(y1-y0)
	sx, sy := 1, 1
	if x0 > x1 {
		sx = -1
	}
	if y0 > y1 {
		sy = -1
	}
	e := dx + dy
	for {
		img.Set(x0, y0, c)
		img.Set(x0+1, y0, c)
		img.Set(x0, y0+1, c)
		if x0 == x1 && y0 == y1 {
			return
		}
		e2 := 2 * e
		if e2 >= dy {
			e += dy
			x0 += sx
		}
		if e2 <= dx {
			e += dx
			y0 += sy
		}
	}
}

func abs(x int) int {
	if x < 0 {
		return -x
	}
	return x
}
