package state

import (
	"errors"
	"maps"
	"strings"
	"testing"

	"github.com/roam-dev/roam/policies"
)

func TestKeysMatchPolicies(t *testing.T) {
	// The scheduler and detector read these keys through package policies.
	for got, want := range map[string]string{
		ContextLabel:       policies.ContextLabel,
		ZoneLabel:          policies.ZoneLabel,
		LocationAnnotation: policies.LocationAnnotation,
		BatteryAnnotation:  policies.BatteryAnnotation,
	} {
		if got != want {
			t.Errorf("agent publishes %q, policies read %q", got, want)
		}
	}
}

func TestParseValid(t *testing.T) {
	yamlDoc := `
context: hospital
zone: site-a
location: {x: 12.5, y: -3}
battery: 87.4
labels: {roam.dev/floor: 2}
annotations: {roam.dev/mission: "deliver, then dock"}
`
	jsonDoc := `{"context":"hospital","zone":"site-a","location":"12.5, -3","battery":87.4,
	  "labels":{"roam.dev/floor":"2"},"annotations":{"roam.dev/mission":"deliver, then dock"}}`
	for name, doc := range map[string]string{"yaml": yamlDoc, "json": jsonDoc} {
		t.Run(name, func(t *testing.T) {
			s, err := Parse([]byte(doc))
			if err != nil {
				t.Fatal(err)
			}
			labels, annos := s.NodeLabels(), s.NodeAnnotations()
			want := map[string]string{ContextLabel: "hospital", ZoneLabel: "site-a", "roam.dev/floor": "2"}
			if !maps.Equal(labels, want) {
				t.Errorf("labels = %v, want %v", labels, want)
			}
			wantA := map[string]string{LocationAnnotation: "12.5,-3", BatteryAnnotation: "87", "roam.dev/mission": "deliver, then dock"}
			if !maps.Equal(annos, wantA) {
				t.Errorf("annotations = %v, want %v", annos, wantA)
			}
		})
	}
}

func TestParseEmptyStateAndNulls(t *testing.T) {
	for _, doc := range []string{"{}", "context: null\nbattery: ~\n"} {
		s, err := Parse([]byte(doc))
		if err != nil {
			t.Fatalf("%q: %v", doc, err)
		}
		if !s.Equal(State{}) || len(s.NodeLabels()) != 0 || len(s.NodeAnnotations()) != 0 {
			t.Errorf("%q parsed to %+v, want the empty state", doc, s)
		}
	}
}

func TestParseErrorsNameTheField(t *testing.T) {
	for _, c := range []struct {
		name, doc, field, reason string
	}{
		{"empty file", "", "", "empty document"},
		{"malformed", "context: [hospital", "", "malformed"},
		{"not a mapping", "- a\n- b", "", "must be a mapping"},
		{"two documents", "context: a\n---\ncontext: b\n", "", "more than one document"},
		{"unknown field", "contxt: hospital", "contxt", "unknown field"},
		{"context not a label value", "context: Hospital Ward", "context", "not a valid label value"},
		{"context too long", "context: " + strings.Repeat("a", 64), "context", "not a valid label value"},
		{"context a list", "context: [a]", "context", "must be a string"},
		{"zone invalid", `zone: "-a"`, "zone", "not a valid label value"},
		{"location NaN", "location: {x: .nan, y: 1}", "location.x", "finite"},
		{"location Inf", "location: {x: 1, y: -.inf}", "location.y", "finite"},
		{"location string NaN", `location: "NaN,1"`, "location", "finite"},
		{"location string Inf", `location: "1,+Inf"`, "location", "finite"},
		{"location string overflow", `location: "1e400,1"`, "location", "out of range"},
		{"location not x,y", `location: "12.5"`, "location", `not "x,y"`},
		{"location garbage", `location: "a,b"`, "location", "not a number"},
		{"location missing y", "location: {x: 1}", "location.y", "missing"},
		{"location extra", "location: {x: 1, y: 2, z: 3}", "location.z", "unknown field"},
		{"location number", "location: 3", "location", `"x,y"`},
		{"location x string", `location: {x: "1", y: 2}`, "location.x", "must be a number"},
		{"battery high", "battery: 101", "battery", "outside 0..100"},
		{"battery negative", "battery: -0.5", "battery", "outside 0..100"},
		{"battery string", `battery: "full"`, "battery", "must be a number"},
		{"battery NaN", "battery: .nan", "battery", "finite"},
		{"label outside prefix", "labels: {example.com/x: y}", `labels["example.com/x"]`, "outside the roam.dev/ prefix"},
		{"label subdomain", "labels: {sub.roam.dev/x: y}", `labels["sub.roam.dev/x"]`, "outside the roam.dev/ prefix"},
		{"label no prefix", "labels: {floor: 2}", `labels["floor"]`, "outside the roam.dev/ prefix"},
		{"label bad name", "labels: {roam.dev/-x: y}", `labels["roam.dev/-x"]`, "invalid key"},
		{"label bad value", "labels: {roam.dev/x: 'a b'}", `labels["roam.dev/x"]`, "not a valid label value"},
		{"label reserved", "labels: {roam.dev/context: a}", `labels["roam.dev/context"]`, "reserved"},
		{"annotation outside prefix", "annotations: {kubernetes.io/x: y}", `annotations["kubernetes.io/x"]`, "outside"},
		{"annotation fence", "annotations: {roam.dev/fence: 2s}", `annotations["roam.dev/fence"]`, "fencing"},
		{"annotation location", `annotations: {roam.dev/location: "1,2"}`, `annotations["roam.dev/location"]`, "location field"},
		{"annotations a list", "annotations: [a]", "annotations", "must be a mapping"},
		{"too big", "context: a\n#" + strings.Repeat("x", MaxSize), "", "limit of 65536"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse([]byte(c.doc))
			var fe *FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("Parse(%q) = %v, want a *FieldError", c.doc, err)
			}
			if fe.Field != c.field || !strings.Contains(fe.Reason, c.reason) {
				t.Errorf("Parse(%q): field %q reason %q; want field %q, reason containing %q", c.doc, fe.Field, fe.Reason, c.field, c.reason)
			}
			if c.field != "" && !strings.Contains(err.Error(), c.field) {
				t.Errorf("error %q does not name field %q", err, c.field)
			}
		})
	}
}

func TestMarshalRoundTrip(t *testing.T) {
	b := 42.5
	s := State{Context: "store", Zone: "z1", Location: &Location{X: -1.25, Y: 1e6}, Battery: &b,
		Labels: map[string]string{"roam.dev/a": "b"}, Annotations: map[string]string{"roam.dev/c": "d e"}}
	data, err := s.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	got, err := Parse(data)
	if err != nil {
		t.Fatalf("Parse(%s): %v", data, err)
	}
	if !got.Equal(s) {
		t.Errorf("round trip: got %+v, want %+v", got, s)
	}
	if got.Equal(State{Context: "store"}) {
		t.Error("Equal ignores fields")
	}
}
