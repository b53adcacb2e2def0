package state

import (
	"errors"
	"strings"
	"testing"
)

// FuzzParse checks that Parse never panics, that every error it returns is
// a *FieldError, and that every state it accepts is valid: it re-encodes and
// re-parses to the same state, and its Node keys stay under roam's prefix
// and the zone label.
func FuzzParse(f *testing.F) {
	for _, seed := range []string{
		"context: hospital\nzone: site-a\nlocation: {x: 12.5, y: -3}\nbattery: 87\n",
		`{"context":"store","location":"1,2","battery":5,"labels":{"roam.dev/a":"b"}}`,
		"annotations: {roam.dev/m: \"x\"}\nlabels: {roam.dev/floor: 2}\n",
		"location: {x: .nan, y: 1}", `location: "1e400,2"`, "battery: 100.0",
		"{}", "", "null", "- a", "a: &x [*x]", "context: !!binary aGVsbG8=",
		"labels: {1: 2}", "location: {x: 1, y: 2, x: 3}",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := Parse(data)
		if err != nil {
			var fe *FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("error %v (%T) is not a *FieldError", err, err)
			}
			return
		}
		for k := range s.NodeLabels() {
			if !strings.HasPrefix(k, Prefix) && k != ZoneLabel {
				t.Fatalf("accepted label %q", k)
			}
		}
		for k := range s.NodeAnnotations() {
			if !strings.HasPrefix(k, Prefix) || k == FenceAnnotation {
				t.Fatalf("accepted annotation %q", k)
			}
		}
		if s.Battery != nil && (*s.Battery < 0 || *s.Battery > 100) {
			t.Fatalf("accepted battery %v", *s.Battery)
		}
		enc, err := s.MarshalJSON()
		if err != nil {
			t.Fatalf("marshal %+v: %v", s, err)
		}
		again, err := Parse(enc)
		if err != nil {
			t.Fatalf("re-parse of %s: %v", enc, err)
		}
		if !again.Equal(s) {
			t.Fatalf("round trip changed the state: %+v → %s → %+v", s, enc, again)
		}
	})
}
