package cluster

import (
	"fmt"
	"html"
	"math"
	"sort"
	"strings"
)

// Charts are plain SVG written by hand: no chart dependency.

const (
	chartW, chartH         = 900, 460
	padL, padR, padT, padB = 70, 30, 70, 60
	colorRoam, colorStock  = "#1f77b4", "#d62728"
	fontAttrs              = `font-family="sans-serif" font-size="12"`
	fontFamily             = `font-family="sans-serif"`
)

// symlog maps seconds to 0..1 on a log10(1+t) axis up to max.
func symlog(t, max float64) float64 { return math.Log10(1+math.Max(t, 0)) / math.Log10(1+max) }

func niceTicks(max float64) []float64 {
	var out []float64
	for _, t := range []float64{0, 1, 2, 5, 10, 20, 50, 100, 200, 300, 500, 1000, 2000} {
		if t <= max {
			out = append(out, t)
		}
	}
	return out
}

func svgHeader(b *strings.Builder, title, subtitle string) {
	fmt.Fprintf(b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d">`+"\n", chartW, chartH, chartW, chartH)
	fmt.Fprintf(b, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	fmt.Fprintf(b, `<text x="%d" y="24" %s font-size="16" font-weight="bold">%s</text>`+"\n", padL, fontFamily, html.EscapeString(title))
	fmt.Fprintf(b, `<text x="%d" y="44" %s font-size="11" fill="#555">%s</text>`+"\n", padL, fontFamily, html.EscapeString(subtitle))
}

// xAxis draws a symlog time axis.
func xAxis(b *strings.Builder, max float64, label string) func(float64) float64 {
	plotW := float64(chartW - padL - padR)
	x := func(t float64) float64 { return padL + plotW*symlog(t, max) }
	y0 := float64(chartH - padB)
	fmt.Fprintf(b, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="black"/>`+"\n", padL, y0, chartW-padR, y0)
	for _, t := range niceTicks(max) {
		fmt.Fprintf(b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%.1f" stroke="#eee"/>`+"\n", x(t), padT, x(t), y0)
		fmt.Fprintf(b, `<text x="%.1f" y="%.1f" %s text-anchor="middle">%g</text>`+"\n", x(t), y0+16, fontAttrs, t)
	}
	fmt.Fprintf(b, `<text x="%.1f" y="%d" %s text-anchor="middle">%s</text>`+"\n", padL+plotW/2, chartH-18, fontAttrs, html.EscapeString(label))
	return x
}

// CDFChart is the CDF of redeploy times (lost robots), roam vs stock.
// Pods not replaced by the end of the run are drawn as open circles at
// their lower bound.
func (r *Result) CDFChart() string {
	var b strings.Builder
	svgHeader(&b, "Redeploy time after a robot is lost: roam vs stock Kubernetes (CDF)", r.Label())
	maxT := r.RunLength().Seconds()
	for _, s := range r.Samples {
		maxT = math.Max(maxT, s.Seconds)
	}
	maxT *= 1.1
	x := xAxis(&b, maxT, "seconds from the robot's last heartbeat to a replacement pod Running (log scale)")
	plotH := float64(chartH - padT - padB)
	y := func(f float64) float64 { return float64(chartH-padB) - plotH*f }
	for _, f := range []float64{0, 0.25, 0.5, 0.75, 1} {
		fmt.Fprintf(&b, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#eee"/>`+"\n", padL, y(f), chartW-padR, y(f))
		fmt.Fprintf(&b, `<text x="%d" y="%.1f" %s text-anchor="end">%.0f%%</text>`+"\n", padL-6, y(f)+4, fontAttrs, 100*f)
	}
	fmt.Fprintf(&b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="black"/>`+"\n", padL, padT, padL, chartH-padB)
	legendY := padT + 10
	for _, c := range []struct {
		copy  Copy
		color string
	}{{Roam, colorRoam}, {Stock, colorStock}} {
		var xs []float64
		var pending []float64
		for _, s := range r.Samples {
			if s.Kind == "loss" && s.Copy == c.copy {
				xs = append(xs, s.Seconds)
				if !s.Replaced {
					pending = append(pending, s.Seconds)
				}
			}
		}
		sort.Float64s(xs)
		n := float64(len(xs))
		if n > 0 {
			pts := []string{fmt.Sprintf("%.1f,%.1f", x(0), y(0))}
			for i, v := range xs {
				pts = append(pts, fmt.Sprintf("%.1f,%.1f", x(v), y(float64(i)/n)), fmt.Sprintf("%.1f,%.1f", x(v), y(float64(i+1)/n)))
			}
			fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="2" points="%s"/>`+"\n", c.color, strings.Join(pts, " "))
			for _, v := range pending {
				fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="5" fill="white" stroke="%s" stroke-width="2"/>`+"\n", x(v), y(1), c.color)
			}
		}
		f := r.P99("loss", c.copy)
		label := fmt.Sprintf("%s (n=%d): p99 %.1f s", c.copy, f.N, f.Seconds)
		if f.Lower {
			label = fmt.Sprintf("%s (n=%d): p99 > %.1f s, %d not replaced by run end (open circles)", c.copy, f.N, f.Seconds, f.Pending)
		}
		fmt.Fprintf(&b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="%s" stroke-width="3"/>`+"\n", padL+12, legendY, padL+36, legendY, c.color)
		fmt.Fprintf(&b, `<text x="%d" y="%d" %s>%s</text>`+"\n", padL+42, legendY+4, fontAttrs, html.EscapeString(label))
		legendY += 18
	}
	b.WriteString("</svg>\n")
	return b.String()
}

// timelineRobot is the lost robot the timeline shows: the first that ran
// pods of both copies (else the first).
func (r *Result) timelineRobot() LostRobot {
	for _, l := range r.Lost {
		if l.RoamPods > 0 && l.StockPods > 0 {
			return l
		}
	}
	return r.Lost[0]
}

// TimelineChart is the timeline of one lost robot: what roam and stock
// Kubernetes did, in seconds after its last heartbeat.
func (r *Result) TimelineChart() string {
	l := r.timelineRobot()
	var b strings.Builder
	svgHeader(&b, fmt.Sprintf("Timeline of lost robot %s (%s, %s link): roam vs stock", l.Name, l.Context, l.Link), r.Label())
	maxT := 1.0
	for _, m := range l.Marks {
		maxT = math.Max(maxT, m.Seconds)
	}
	maxT *= 1.1
	x := xAxis(&b, maxT, "seconds after the robot's last heartbeat (log scale)")
	lanes := []struct {
		name, title, color string
	}{{"robot", "robot", "#333"}, {"roam", "roam", colorRoam}, {"stock", "stock", colorStock}}
	laneH := float64(chartH-padT-padB) / float64(len(lanes))
	for i, lane := range lanes {
		top := float64(padT) + laneH*float64(i)
		mid := top + 18
		fmt.Fprintf(&b, `<text x="%d" y="%.1f" %s font-weight="bold" text-anchor="end" fill="%s">%s</text>`+"\n", padL-8, mid+4, fontAttrs, lane.color, lane.title)
		fmt.Fprintf(&b, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="%s" stroke-dasharray="2,3"/>`+"\n", padL, mid, chartW-padR, mid, lane.color)
		var marks []Mark
		for _, m := range l.Marks {
			if m.Lane == lane.name {
				marks = append(marks, m)
			}
		}
		sort.SliceStable(marks, func(a, c int) bool { return marks[a].Seconds < marks[c].Seconds })
		for k, m := range marks {
			ty := mid + 16 + float64(k%5)*14
			anchor := "start"
			if x(m.Seconds) > chartW-padR-220 {
				anchor = "end"
			}
			fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="4" fill="%s"/>`+"\n", x(m.Seconds), mid, lane.color)
			fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-width="0.5"/>`+"\n", x(m.Seconds), mid, x(m.Seconds), ty-4, lane.color)
			fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" %s font-size="10" text-anchor="%s" fill="%s">%s (%.1f s)</text>`+"\n", x(m.Seconds)+3, ty, fontFamily, anchor, lane.color, html.EscapeString(m.Label), m.Seconds)
		}
	}
	b.WriteString("</svg>\n")
	return b.String()
}
