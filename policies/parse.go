package policies

import (
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// Data keys of a policy ConfigMap, in the order the design lists them.
const (
	KeyMatch           = "match"
	KeyRequire         = "require"
	KeyScore           = "score"
	KeyWeight          = "weight"
	KeyOnContextChange = "onContextChange"
	KeySettle          = "settle"
	KeyOnNodeFailure   = "onNodeFailure"
	KeyPhiThreshold    = "phiThreshold"
	KeyForceDelete     = "forceDelete"
	// KeyFreeze: whether roam-agent may freeze the policy's pods when their
	// robot loses the cluster (default true); "false" makes them unfenced.
	KeyFreeze = "freeze"
	// KeyAcceptDuplicates: whether the policy's pods may be replaced in
	// seconds from an unfenced robot, where the original may still run
	// (default false).
	KeyAcceptDuplicates = "acceptDuplicates"
)

// Keys lists every valid data key of a policy ConfigMap, in the design's
// order.
func Keys() []string {
	return []string{KeyMatch, KeyRequire, KeyScore, KeyWeight, KeyOnContextChange, KeySettle, KeyOnNodeFailure, KeyPhiThreshold, KeyForceDelete, KeyFreeze, KeyAcceptDuplicates}
}

// Defaults from the design.
const (
	DefaultWeight = 1.0
	DefaultSettle = 10 * time.Second
	// MaxSettle bounds settle; longer waits are almost certainly a unit typo.
	MaxSettle = 24 * time.Hour
)

// Parse validates and compiles a policy ConfigMap. The error is a
// *ParseError listing every problem with its key, line:col and snippet.
func Parse(cm *corev1.ConfigMap) (*Policy, error) {
	if cm == nil {
		return nil, &ParseError{Problems: []Problem{{Message: "no ConfigMap"}}}
	}
	pe := &ParseError{Namespace: cm.Namespace, Name: cm.Name}
	add := func(p *Problem) {
		if p != nil {
			pe.Problems = append(pe.Problems, *p)
		}
	}
	if v, ok := cm.Labels[PolicyLabel]; !ok {
		add(&Problem{Message: fmt.Sprintf("missing label %s: \"true\" (only labelled ConfigMaps are policies)", PolicyLabel)})
	} else if v != "true" {
		add(&Problem{Message: fmt.Sprintf("label %s is %q, want \"true\"", PolicyLabel, v)})
	}

	p := &Policy{
		Namespace:       cm.Namespace,
		Name:            cm.Name,
		ResourceVersion: cm.ResourceVersion,
		Weight:          DefaultWeight,
		OnContextChange: Reschedule,
		Settle:          DefaultSettle,
		OnNodeFailure:   Reschedule,
		Freeze:          true,
	}
	data := cm.Data
	if s, ok := data[KeyMatch]; ok {
		prog, prob := compile(KeyMatch, s, kindBool)
		add(prob)
		p.match, p.HasMatch = prog, prog != nil
	}
	if s, ok := data[KeyRequire]; ok {
		prog, prob := compile(KeyRequire, s, kindBool)
		add(prob)
		p.require = prog
	}
	if s, ok := data[KeyScore]; ok {
		prog, prob := compile(KeyScore, s, kindNumber)
		add(prob)
		p.score, p.HasScore = prog, prog != nil
	}
	if s, ok := data[KeyWeight]; ok {
		v, prob := positiveNumber(KeyWeight, s)
		add(prob)
		p.Weight = v
	}
	if s, ok := data[KeyOnContextChange]; ok {
		v, prob := action(KeyOnContextChange, s)
		add(prob)
		p.OnContextChange = v
	}
	if s, ok := data[KeySettle]; ok {
		v, prob := duration(KeySettle, s)
		add(prob)
		p.Settle = v
	}
	if s, ok := data[KeyOnNodeFailure]; ok {
		v, prob := action(KeyOnNodeFailure, s)
		add(prob)
		p.OnNodeFailure = v
	}
	if s, ok := data[KeyPhiThreshold]; ok {
		v, prob := positiveNumber(KeyPhiThreshold, s)
		add(prob)
		p.PhiThreshold = v
	}
	if s, ok := data[KeyForceDelete]; ok {
		v, prob := boolean(KeyForceDelete, s)
		add(prob)
		p.ForceDelete = v
	}
	if s, ok := data[KeyFreeze]; ok {
		v, prob := boolean(KeyFreeze, s)
		add(prob)
		p.Freeze = v
	}
	if s, ok := data[KeyAcceptDuplicates]; ok {
		v, prob := boolean(KeyAcceptDuplicates, s)
		add(prob)
		p.AcceptDuplicates = v
	}

	var unknown []string
	for k := range data {
		if !isKey(k) {
			unknown = append(unknown, k)
		}
	}
	sort.Strings(unknown)
	for _, k := range unknown {
		msg := "unknown key"
		if s := nearest(k, Keys()); s != "" {
			msg += fmt.Sprintf(": did you mean %s?", s)
		} else {
			msg += " (valid keys: " + strings.Join(Keys(), ", ") + ")"
		}
		add(&Problem{Key: k, Message: msg})
	}
	bin := make([]string, 0, len(cm.BinaryData))
	for k := range cm.BinaryData {
		bin = append(bin, k)
	}
	sort.Strings(bin)
	for _, k := range bin {
		add(&Problem{Key: k, Message: "binaryData is not read: put the key under data"})
	}

	if len(pe.Problems) > 0 {
		return nil, pe
	}
	return p, nil
}

func isKey(k string) bool {
	for _, v := range Keys() {
		if k == v {
			return true
		}
	}
	return false
}

// scalar trims a value and returns the 1-based column where it starts.
func scalar(s string) (string, int) {
	t := strings.TrimLeft(s, " \t")
	return strings.TrimSpace(t), len(s) - len(t) + 1
}

func scalarProblem(key, raw string, col int, msg string) *Problem {
	if strings.Contains(strings.TrimSpace(raw), "\n") || raw == "" {
		return &Problem{Key: key, Message: msg}
	}
	return positioned(key, raw, 1, col, msg)
}

func positiveNumber(key, raw string) (float64, *Problem) {
	s, col := scalar(raw)
	v, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
		return 0, scalarProblem(key, raw, col, fmt.Sprintf("%q is not a number (want e.g. \"2\" or \"0.5\")", s))
	}
	if v <= 0 {
		return 0, scalarProblem(key, raw, col, fmt.Sprintf("must be greater than 0, got %s", s))
	}
	return v, nil
}

func action(key, raw string) (Action, *Problem) {
	s, col := scalar(raw)
	switch Action(s) {
	case Reschedule, Keep:
		return Action(s), nil
	}
	msg := fmt.Sprintf("%q is not one of reschedule, keep", s)
	if n := nearest(s, []string{string(Reschedule), string(Keep)}); n != "" {
		msg += fmt.Sprintf(": did you mean %s?", n)
	}
	return "", scalarProblem(key, raw, col, msg)
}

func duration(key, raw string) (time.Duration, *Problem) {
	s, col := scalar(raw)
	d, err := time.ParseDuration(s)
	if err != nil {
		hint := ""
		if _, nerr := strconv.ParseFloat(s, 64); nerr == nil {
			hint = fmt.Sprintf(": add a unit, e.g. %ss", s)
		}
		return 0, scalarProblem(key, raw, col, fmt.Sprintf("%q is not a duration (want e.g. \"10s\", \"1m30s\")%s", s, hint))
	}
	if d < 0 {
		return 0, scalarProblem(key, raw, col, fmt.Sprintf("must not be negative, got %s", s))
	}
	if d > MaxSettle {
		return 0, scalarProblem(key, raw, col, fmt.Sprintf("%s is longer than the limit %s", s, MaxSettle))
	}
	return d, nil
}

func boolean(key, raw string) (bool, *Problem) {
	s, col := scalar(raw)
	switch s {
	case "true":
		return true, nil
	case "false":
		return false, nil
	}
	return false, scalarProblem(key, raw, col, fmt.Sprintf("%q is not a boolean: want \"true\" or \"false\"", s))
}

// Error formats one "namespace/name: key: line:col: message" line per
// problem, each followed by its snippet.
func (e *ParseError) Error() string {
	var b strings.Builder
	for i, p := range e.Problems {
		if i > 0 {
			b.WriteByte('\n')
		}
		if e.Namespace != "" {
			b.WriteString(e.Namespace + "/")
		}
		b.WriteString(e.Name + ": ")
		b.WriteString(p.String())
	}
	return b.String()
}

// String formats "key: line:col: message" and the snippet on the lines
// below (key and position are left out when empty).
func (p Problem) String() string {
	var b strings.Builder
	if p.Key != "" {
		b.WriteString(p.Key + ": ")
	}
	if p.Line > 0 {
		fmt.Fprintf(&b, "%d:%d: ", p.Line, p.Column)
	}
	b.WriteString(p.Message)
	if p.Snippet != "" {
		b.WriteString("\n" + p.Snippet)
	}
	return b.String()
}
