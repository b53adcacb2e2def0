// Package state is what a robot senses about itself, as roam-agent receives
// it from the robot's own software: the wire format (YAML or JSON), its
// validation, and how a valid state maps onto Node labels and annotations.
//
// A State is always complete: the robot's software sends everything it
// knows each time, and a field left out means "unknown", which removes the
// corresponding key from the Node. Parsing never returns a partly valid
// State: either every field is valid or the error names the first field
// that is not, and why.
package state

import (
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"strconv"
)

// Keys on the Node that the agent owns. They are the names every roam
// component reads (the scheduler's and detector's policies package uses the
// same strings).
const (
	// Prefix is the only prefix under which extra labels and annotations
	// may be set.
	Prefix = "roam.dev/"
	// ContextLabel is the robot's context (hospital, store, warehouse…).
	ContextLabel = "roam.dev/context"
	// ZoneLabel is the site or zone the robot is in.
	ZoneLabel = "topology.kubernetes.io/zone"
	// LocationAnnotation is "x,y" in metres in the site frame.
	LocationAnnotation = "roam.dev/location"
	// BatteryAnnotation is the charge, "0".."100".
	BatteryAnnotation = "roam.dev/battery"
	// FenceAnnotation is owned by the agent's fencing; the robot's software
	// may not set it.
	FenceAnnotation = "roam.dev/fence"
)

// MaxSize is the largest state document accepted, in bytes.
const MaxSize = 64 << 10

// Location is a position in metres in the site frame.
type Location struct {
	X, Y float64
}

// String formats l as the annotation value "x,y".
func (l Location) String() string {
	return strconv.FormatFloat(l.X, 'f', -1, 64) + "," + strconv.FormatFloat(l.Y, 'f', -1, 64)
}

// Distance is the Euclidean distance between l and o in metres.
func (l Location) Distance(o Location) float64 {
	return math.Hypot(l.X-o.X, l.Y-o.Y)
}

// State is one complete, valid report of what the robot senses. The zero
// value is a robot that knows nothing (every owned key absent).
type State struct {
	// Context is the value of the roam.dev/context label ("" = absent).
	Context string
	// Zone is the value of the topology.kubernetes.io/zone label ("" = absent).
	Zone string
	// Location is nil when unknown.
	Location *Location
	// Battery is the charge in percent (0..100), nil when unknown.
	Battery *float64
	// Labels and Annotations are extra keys, all under roam.dev/.
	Labels      map[string]string
	Annotations map[string]string
}

// BatteryString formats the battery annotation value: the charge rounded
// to a whole percent.
func BatteryString(b float64) string {
	return strconv.Itoa(int(math.Round(b)))
}

// NodeLabels returns the Node labels s sets.
func (s State) NodeLabels() map[string]string {
	out := make(map[string]string, len(s.Labels)+2)
	for k, v := range s.Labels {
		out[k] = v
	}
	if s.Context != "" {
		out[ContextLabel] = s.Context
	}
	if s.Zone != "" {
		out[ZoneLabel] = s.Zone
	}
	return out
}

// NodeAnnotations returns the Node annotations s sets.
func (s State) NodeAnnotations() map[string]string {
	out := make(map[string]string, len(s.Annotations)+2)
	for k, v := range s.Annotations {
		out[k] = v
	}
	if s.Location != nil {
		out[LocationAnnotation] = s.Location.String()
	}
	if s.Battery != nil {
		out[BatteryAnnotation] = BatteryString(*s.Battery)
	}
	return out
}

// FieldError says which field of a state document is wrong and why.
type FieldError struct {
	// Field is the path of the field, e.g. "location.x" or
	// `labels["example.com/x"]`; empty for the document as a whole.
	Field string
	// Reason says what is wrong with it.
	Reason string
}

func (e *FieldError) Error() string {
	if e.Field == "" {
		return "state: " + e.Reason
	}
	return fmt.Sprintf("state field %s: %s", e.Field, e.Reason)
}

func fieldErr(field, format string, args ...any) *FieldError {
	return &FieldError{Field: field, Reason: fmt.Sprintf(format, args...)}
}

// Equal reports whether s and o set the same Node keys to the same values.
func (s State) Equal(o State) bool {
	return s.Context == o.Context && s.Zone == o.Zone &&
		ptrEqual(s.Location, o.Location) && ptrEqual(s.Battery, o.Battery) &&
		maps.Equal(s.Labels, o.Labels) && maps.Equal(s.Annotations, o.Annotations)
}

func ptrEqual[T comparable](a, b *T) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}

// MarshalJSON encodes s as a state document that Parse accepts.
func (s State) MarshalJSON() ([]byte, error) {
	type loc struct {
		X float64 `json:"x"`
		Y float64 `json:"y"`
	}
	doc := struct {
		Context     string            `json:"context,omitempty"`
		Zone        string            `json:"zone,omitempty"`
		Location    *loc              `json:"location,omitempty"`
		Battery     *float64          `json:"battery,omitempty"`
		Labels      map[string]string `json:"labels,omitempty"`
		Annotations map[string]string `json:"annotations,omitempty"`
	}{Context: s.Context, Zone: s.Zone, Battery: s.Battery, Labels: s.Labels, Annotations: s.Annotations}
	if s.Location != nil {
		doc.Location = &loc{X: s.Location.X, Y: s.Location.Y}
	}
	return json.Marshal(doc)
}
