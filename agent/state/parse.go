package state

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
	"k8s.io/apimachinery/pkg/util/validation"
)

// Field names of the state document.
const (
	fieldContext     = "context"
	fieldZone        = "zone"
	fieldLocation    = "location"
	fieldBattery     = "battery"
	fieldLabels      = "labels"
	fieldAnnotations = "annotations"
)

var knownFields = []string{fieldContext, fieldZone, fieldLocation, fieldBattery, fieldLabels, fieldAnnotations}

// Parse parses and validates a state document, YAML or JSON (JSON is
// YAML). Example:
//
//	context: hospital
//	zone: site-a
//	location: {x: 12.5, y: -3}   # or "12.5,-3"
//	battery: 87
//	labels: {roam.dev/floor: "2"}
//	annotations: {roam.dev/mission: delivery}
//
// Every error is a *FieldError naming the offending field.
func Parse(data []byte) (State, error) {
	if len(data) > MaxSize {
		return State{}, &FieldError{Reason: fmt.Sprintf("document is %d bytes, more than the limit of %d", len(data), MaxSize)}
	}
	if len(bytes.TrimSpace(data)) == 0 {
		// An empty file is what a reader sees halfway through a
		// non-atomic write; a robot that knows nothing writes "{}".
		return State{}, &FieldError{Reason: "empty document (write {} for a robot that knows nothing)"}
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc any
	if err := dec.Decode(&doc); err != nil {
		return State{}, &FieldError{Reason: "malformed YAML/JSON: " + strings.TrimPrefix(err.Error(), "yaml: ")}
	}
	var extra any
	if err := dec.Decode(&extra); err == nil {
		return State{}, &FieldError{Reason: "more than one document"}
	}
	if doc == nil {
		return State{}, &FieldError{Reason: "empty document (write {} for a robot that knows nothing)"}
	}
	top, err := asMap("", doc)
	if err != nil {
		return State{}, err
	}
	var s State
	for _, k := range sortedKeys(top) {
		v := top[k]
		if v == nil {
			continue // null: unknown, like an absent field
		}
		switch k {
		case fieldContext:
			s.Context, err = labelValue(k, v)
		case fieldZone:
			s.Zone, err = labelValue(k, v)
		case fieldLocation:
			s.Location, err = location(v)
		case fieldBattery:
			s.Battery, err = battery(v)
		case fieldLabels:
			s.Labels, err = extraKeys(k, v, true)
		case fieldAnnotations:
			s.Annotations, err = extraKeys(k, v, false)
		default:
			err = fieldErr(k, "unknown field (known fields: %s)", strings.Join(knownFields, ", "))
		}
		if err != nil {
			return State{}, err
		}
	}
	return s, nil
}

// asMap returns v as a map with string keys.
func asMap(field string, v any) (map[string]any, error) {
	switch m := v.(type) {
	case map[string]any:
		return m, nil
	case map[any]any:
		out := make(map[string]any, len(m))
		for k, val := range m {
			ks, ok := k.(string)
			if !ok {
				return nil, fieldErr(field, "key %v is not a string", k)
			}
			out[ks] = val
		}
		return out, nil
	}
	if field == "" {
		return nil, &FieldError{Reason: fmt.Sprintf("document must be a mapping, not %s", kind(v))}
	}
	return nil, fieldErr(field, "must be a mapping, not %s", kind(v))
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func kind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case string:
		return "a string"
	case bool:
		return "a boolean"
	case int, int64, uint64, float64:
		return "a number"
	case []any:
		return "a list"
	case map[string]any, map[any]any:
		return "a mapping"
	}
	return fmt.Sprintf("%T", v)
}

// scalar renders a YAML scalar as the string a label or annotation holds.
func scalar(field string, v any) (string, error) {
	switch x := v.(type) {
	case string:
		return x, nil
	case bool:
		return strconv.FormatBool(x), nil
	case int:
		return strconv.Itoa(x), nil
	case int64:
		return strconv.FormatInt(x, 10), nil
	case uint64:
		return strconv.FormatUint(x, 10), nil
	case float64:
		if !finite(x) {
			return "", fieldErr(field, "must be a string, not %v", x)
		}
		return strconv.FormatFloat(x, 'f', -1, 64), nil
	}
	return "", fieldErr(field, "must be a string, not %s", kind(v))
}

func labelValue(field string, v any) (string, error) {
	s, err := scalar(field, v)
	if err != nil {
		return "", err
	}
	if errs := validation.IsValidLabelValue(s); len(errs) > 0 {
		return "", fieldErr(field, "%q is not a valid label value: %s", s, strings.Join(errs, "; "))
	}
	return s, nil
}

func number(field string, v any) (float64, error) {
	var f float64
	switch x := v.(type) {
	case int:
		f = float64(x)
	case int64:
		f = float64(x)
	case uint64:
		f = float64(x)
	case float64:
		f = x
	default:
		return 0, fieldErr(field, "must be a number, not %s", kind(v))
	}
	if !finite(f) {
		return 0, fieldErr(field, "must be a finite number, not %v", f)
	}
	return f, nil
}

func location(v any) (*Location, error) {
	if s, ok := v.(string); ok {
		l, err := ParseLocation(s)
		if err != nil {
			return nil, fieldErr(fieldLocation, "%v", err)
		}
		return &l, nil
	}
	m, err := asMap(fieldLocation, v)
	if err != nil {
		return nil, fieldErr(fieldLocation, `must be {x: …, y: …} or "x,y", not %s`, kind(v))
	}
	var l Location
	for _, k := range sortedKeys(m) {
		if k != "x" && k != "y" {
			return nil, fieldErr(fieldLocation+"."+k, "unknown field (known fields: x, y)")
		}
	}
	for _, c := range []struct {
		name string
		dst  *float64
	}{{"x", &l.X}, {"y", &l.Y}} {
		raw, ok := m[c.name]
		if !ok || raw == nil {
			return nil, fieldErr(fieldLocation+"."+c.name, "missing")
		}
		if *c.dst, err = number(fieldLocation+"."+c.name, raw); err != nil {
			return nil, err
		}
	}
	return &l, nil
}

// ParseLocation parses "x,y" (metres, spaces allowed, both finite).
func ParseLocation(s string) (Location, error) {
	xs, ys, ok := strings.Cut(s, ",")
	if !ok {
		return Location{}, fmt.Errorf("%q is not \"x,y\"", s)
	}
	var l Location
	for _, c := range []struct {
		name, text string
		dst        *float64
	}{{"x", xs, &l.X}, {"y", ys, &l.Y}} {
		f, err := strconv.ParseFloat(strings.TrimSpace(c.text), 64)
		if err != nil {
			var ne *strconv.NumError
			if errors.As(err, &ne) && errors.Is(ne.Err, strconv.ErrRange) {
				return Location{}, fmt.Errorf("%s in %q is out of range", c.name, s)
			}
			return Location{}, fmt.Errorf("%s in %q is not a number", c.name, s)
		}
		if !finite(f) {
			return Location{}, fmt.Errorf("%s in %q must be finite", c.name, s)
		}
		*c.dst = f
	}
	return l, nil
}

func battery(v any) (*float64, error) {
	b, err := number(fieldBattery, v)
	if err != nil {
		return nil, err
	}
	if b < 0 || b > 100 {
		return nil, fieldErr(fieldBattery, "%v is outside 0..100", b)
	}
	return &b, nil
}

// reserved keys are set through their own fields (or by the agent itself)
// and cannot be given as extra labels or annotations.
var reservedLabels = map[string]string{ContextLabel: "set it with the context field"}
var reservedAnnotations = map[string]string{
	LocationAnnotation: "set it with the location field",
	BatteryAnnotation:  "set it with the battery field",
	FenceAnnotation:    "it is owned by the agent's fencing",
}

func extraKeys(field string, v any, labels bool) (map[string]string, error) {
	m, err := asMap(field, v)
	if err != nil {
		return nil, err
	}
	out := make(map[string]string, len(m))
	for _, k := range sortedKeys(m) {
		path := fmt.Sprintf("%s[%q]", field, k)
		if !strings.HasPrefix(k, Prefix) {
			return nil, fieldErr(path, "key is outside the %s prefix", Prefix)
		}
		if errs := validation.IsQualifiedName(k); len(errs) > 0 {
			return nil, fieldErr(path, "invalid key: %s", strings.Join(errs, "; "))
		}
		reserved := reservedAnnotations
		if labels {
			reserved = reservedLabels
		}
		if why, ok := reserved[k]; ok {
			return nil, fieldErr(path, "reserved key: %s", why)
		}
		if m[k] == nil {
			continue
		}
		var val string
		if labels {
			val, err = labelValue(path, m[k])
		} else {
			val, err = scalar(path, m[k])
		}
		if err != nil {
			return nil, err
		}
		out[k] = val
	}
	return out, nil
}

func finite(f float64) bool { return !math.IsNaN(f) && !math.IsInf(f, 0) }
