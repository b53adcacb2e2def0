package policies

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
)

var update = flag.Bool("update", false, "rewrite testdata/parse.golden")

// parseCases cover every key and every error class. Their messages are
// compared with testdata/parse.golden (go test -run TestParseGolden -update
// rewrites it; review the diff).
var parseCases = []struct {
	name   string
	data   map[string]string
	labels map[string]string // nil: the policy label
	bin    []string
}{
	{name: "valid example", data: exampleData()},
	{name: "missing label", data: map[string]string{"require": "true"}, labels: map[string]string{}},
	{name: "label not true", data: map[string]string{"require": "true"}, labels: map[string]string{PolicyLabel: "yes"}},
	{name: "match syntax error", data: map[string]string{"match": `pod.labels["app" == "x"`}},
	{name: "match not bool", data: map[string]string{"match": `pod.labels["app"]`}},
	{name: "match empty", data: map[string]string{"match": "  "}},
	{name: "require unknown node field", data: map[string]string{"require": `node.contxt == "hospital"`}},
	{name: "require unknown pod field", data: map[string]string{"require": `pod.lables["a"] == "b"`}},
	{name: "require unknown point field", data: map[string]string{"require": `node.location.z > 1`}},
	{name: "require unknown field no suggestion", data: map[string]string{"require": `node.speed > 1`}},
	{name: "require unknown name", data: map[string]string{"require": `nod.context == "x"`}},
	{name: "require unknown name no suggestion", data: map[string]string{"require": `robot.context == "x"`}},
	{name: "require type mismatch multi-line", data: map[string]string{"require": "node.context == \"x\" &&\n  node.battery == \"full\""}},
	{name: "require not bool", data: map[string]string{"require": `node.battery`}},
	{name: "require nested iteration", data: map[string]string{"require": `all(node.taints, {any(node.taints, {none(node.taints, {# == "x"})})})`}},
	{name: "require disabled builtin", data: map[string]string{"require": `now().Hour() > 8`}},
	{name: "require too long", data: map[string]string{"require": strings.Repeat("true && ", MaxExpressionBytes/8) + "true"}},
	{name: "require too many nodes", data: map[string]string{"require": strings.Repeat("1 + ", 300) + "1 > 0"}},
	{name: "require wrong distance args", data: map[string]string{"require": `distance(node.location, 1) < 5`}},
	{name: "score not number", data: map[string]string{"score": `node.context`}},
	{name: "score bool", data: map[string]string{"score": `node.battery > 1`}},
	{name: "score syntax error", data: map[string]string{"score": `10 * * node.battery`}},
	{name: "weight not number", data: map[string]string{"weight": "two"}},
	{name: "weight zero", data: map[string]string{"weight": "0"}},
	{name: "weight negative", data: map[string]string{"weight": "-1.5"}},
	{name: "weight NaN", data: map[string]string{"weight": "NaN"}},
	{name: "weight Inf", data: map[string]string{"weight": "+Inf"}},
	{name: "onContextChange invalid", data: map[string]string{"onContextChange": "evict"}},
	{name: "onContextChange typo", data: map[string]string{"onContextChange": "kep"}},
	{name: "onNodeFailure typo", data: map[string]string{"onNodeFailure": "Reschedule"}},
	{name: "settle no unit", data: map[string]string{"settle": "10"}},
	{name: "settle garbage", data: map[string]string{"settle": "soon"}},
	{name: "settle negative", data: map[string]string{"settle": "-5s"}},
	{name: "settle too long", data: map[string]string{"settle": "48h"}},
	{name: "settle multi-line", data: map[string]string{"settle": "10s\n20s"}},
	{name: "phiThreshold zero", data: map[string]string{"phiThreshold": "0"}},
	{name: "phiThreshold not number", data: map[string]string{"phiThreshold": "high"}},
	{name: "forceDelete not boolean", data: map[string]string{"forceDelete": "yes"}},
	{name: "forceDelete capitalised", data: map[string]string{"forceDelete": "True"}},
	{name: "freeze not boolean", data: map[string]string{"freeze": "never"}},
	{name: "acceptDuplicates not boolean", data: map[string]string{"acceptDuplicates": "1"}},
	{name: "unknown key suggestion", data: map[string]string{"requires": "true"}},
	{name: "unknown key case", data: map[string]string{"Weight": "2"}},
	{name: "unknown key no suggestion", data: map[string]string{"priority": "high"}},
	{name: "binaryData", data: map[string]string{}, bin: []string{"score"}},
	{name: "every problem at once", data: map[string]string{
		"match": "pod.nme == 'x'", "require": "node.contxt", "score": `"x"`, "weight": "0", "onContextChange": "move",
		"settle": "1", "onNodeFailure": "stay", "phiThreshold": "-8", "forceDelete": "maybe", "wieght": "1",
	}, labels: map[string]string{}},
}

func TestParseGolden(t *testing.T) {
	var b strings.Builder
	for _, tc := range parseCases {
		cm := policyCM("ns", "p", tc.data)
		if tc.labels != nil {
			cm.Labels = tc.labels
		}
		for _, k := range tc.bin {
			if cm.BinaryData == nil {
				cm.BinaryData = map[string][]byte{}
			}
			cm.BinaryData[k] = []byte("x")
		}
		p, err := Parse(cm)
		fmt.Fprintf(&b, "=== %s\n", tc.name)
		if err != nil {
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Errorf("%s: error %T is not a *ParseError", tc.name, err)
			}
			if p != nil {
				t.Errorf("%s: a policy returned with an error", tc.name)
			}
			for _, pr := range pe.Problems {
				if pr.Line > 0 && pr.Snippet == "" {
					t.Errorf("%s: positioned problem without a snippet: %+v", tc.name, pr)
				}
				if pr.Key != "" && !strings.Contains(pe.Error(), "ns/p: "+pr.Key+": ") {
					t.Errorf("%s: message does not name key %q", tc.name, pr.Key)
				}
			}
			b.WriteString(err.Error())
		} else {
			b.WriteString("valid")
		}
		b.WriteString("\n")
	}
	golden := filepath.Join("testdata", "parse.golden")
	if *update {
		if err := os.WriteFile(golden, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if got := b.String(); got != string(want) {
		gl, wl := strings.Split(got, "\n"), strings.Split(string(want), "\n")
		for i := 0; i < len(gl) && i < len(wl); i++ {
			if gl[i] != wl[i] {
				t.Fatalf("parse messages differ from %s at line %d:\ngot:  %s\nwant: %s", golden, i+1, gl[i], wl[i])
			}
		}
		t.Fatalf("parse messages differ from %s in length (%d vs %d lines)", golden, len(gl), len(wl))
	}
}

func TestParseValues(t *testing.T) {
	p := mustParse(t, map[string]string{"weight": " 0.5 ", "settle": "1m30s", "onContextChange": "keep", "onNodeFailure": "keep",
		"phiThreshold": "12.5", "forceDelete": "true", "score": "1"})
	if p.Weight != 0.5 || p.Settle != 90*time.Second || p.OnContextChange != Keep || p.OnNodeFailure != Keep ||
		p.PhiThreshold != 12.5 || !p.ForceDelete || !p.HasScore || p.HasMatch {
		t.Errorf("policy = %+v", p)
	}
	if p := mustParse(t, map[string]string{}); !p.Freeze || p.AcceptDuplicates {
		t.Errorf("fencing defaults: freeze %v, acceptDuplicates %v; want true, false", p.Freeze, p.AcceptDuplicates)
	}
	if p := mustParse(t, map[string]string{"freeze": "false", "acceptDuplicates": "true"}); p.Freeze || !p.AcceptDuplicates {
		t.Errorf("freeze false, acceptDuplicates true parsed as %v, %v", p.Freeze, p.AcceptDuplicates)
	}
	if p := mustParse(t, map[string]string{"settle": "0s"}); p.Settle != 0 {
		t.Errorf("settle 0s = %v", p.Settle)
	}
	if _, err := Parse(nil); err == nil {
		t.Error("Parse(nil): want error")
	}
	cm := policyCM("ns", "p", exampleData())
	cm.ResourceVersion = "42"
	if p, err := Parse(cm); err != nil || p.ResourceVersion != "42" || p.Key() != "ns/p" {
		t.Errorf("Parse = %+v, %v", p, err)
	}
	m, r, s := mustParse(t, exampleData()).Sources()
	if m != exampleData()["match"] || r != exampleData()["require"] || s != exampleData()["score"] {
		t.Errorf("Sources = %q %q %q", m, r, s)
	}
}

func TestProblemPositions(t *testing.T) {
	_, err := Parse(policyCM("ns", "p", map[string]string{"require": "node.context == \"x\" &&\n  node.contxt == \"y\""}))
	var pe *ParseError
	if !errors.As(err, &pe) || len(pe.Problems) != 1 {
		t.Fatalf("err = %v", err)
	}
	pr := pe.Problems[0]
	if pr.Key != "require" || pr.Line != 2 || pr.Column != 8 || pr.Snippet != " |   node.contxt == \"y\"\n |        ^" {
		t.Errorf("problem = %+v", pr)
	}
	var _ = corev1.ConfigMap{}
}
