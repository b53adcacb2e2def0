package version

import (
	"strings"
	"testing"
)

func TestRequested(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want bool
	}{
		{nil, false},
		{[]string{"--kubeconfig", "x"}, false},
		{[]string{"--version"}, true},
		{[]string{"--kubeconfig=x", "-version"}, true},
		{[]string{"--version=true"}, true},
		{[]string{"--version=false"}, false},
		{[]string{"--", "--version"}, false},
	} {
		if got := Requested(tc.args); got != tc.want {
			t.Errorf("Requested(%q) = %v, want %v", tc.args, got, tc.want)
		}
	}
}

func TestString(t *testing.T) {
	s := String("roam-x")
	if !strings.HasPrefix(s, "roam-x "+Version()+" (revision ") {
		t.Errorf("String = %q", s)
	}
}
