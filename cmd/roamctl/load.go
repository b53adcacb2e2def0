package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	yaml "go.yaml.in/yaml/v3"
	corev1 "k8s.io/api/core/v1"

	"github.com/roam-dev/roam/policies"
)

// document is one YAML document of a file.
type document struct {
	file  string
	lines []string // the file's lines, for snippets
	root  *yaml.Node
	kind  string
}

// diag is one compiler-style diagnostic.
type diag struct {
	file      string
	object    string // namespace/name, "" when unknown
	key       string
	line, col int // in the file; 0 when unknown
	msg       string
	snippet   string
}

func (d diag) String() string {
	var b strings.Builder
	b.WriteString(d.file + ": ")
	if d.object != "" {
		b.WriteString(d.object + ": ")
	}
	if d.key != "" {
		b.WriteString(d.key + ": ")
	}
	if d.line > 0 {
		fmt.Fprintf(&b, "%d:%d: ", d.line, d.col)
	}
	b.WriteString(d.msg)
	if d.snippet != "" {
		b.WriteString("\n" + d.snippet)
	}
	return b.String()
}

// readDocuments splits a multi-document YAML file.
func readDocuments(file string) ([]document, error) {
	raw, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	lines := strings.Split(string(raw), "\n")
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	var docs []document
	for {
		var n yaml.Node
		if err := dec.Decode(&n); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			return nil, fmt.Errorf("invalid YAML: %w", err)
		}
		if len(n.Content) == 0 || n.Content[0].Kind != yaml.MappingNode {
			continue // empty document or not an object
		}
		d := document{file: file, lines: lines, root: n.Content[0]}
		if k := mapValue(d.root, "kind"); k != nil {
			d.kind = k.Value
		}
		docs = append(docs, d)
	}
	return docs, nil
}

// mapValue returns the value node of key in mapping m, or nil.
func mapValue(m *yaml.Node, key string) *yaml.Node {
	_, v := mapEntry(m, key)
	return v
}

func mapEntry(m *yaml.Node, key string) (k, v *yaml.Node) {
	if m == nil || m.Kind != yaml.MappingNode {
		return nil, nil
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return m.Content[i], m.Content[i+1]
		}
	}
	return nil, nil
}

// decode converts a YAML node to a Kubernetes object through JSON.
func decode(n *yaml.Node, into any) error {
	var v any
	if err := n.Decode(&v); err != nil {
		return err
	}
	j, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return json.Unmarshal(j, into)
}

// snippetAt renders file line (1-based) with a caret under col.
func (d document) snippetAt(line, col int) string {
	if line < 1 || line > len(d.lines) {
		return ""
	}
	return policies.Snippet(d.lines[line-1], col)
}

// configMap decodes a ConfigMap document. Data values that are not YAML
// strings (weight: 2 instead of "2") are problems: the API server rejects
// them.
func (d document) configMap() (*corev1.ConfigMap, []diag) {
	var cm corev1.ConfigMap
	var diags []diag
	data := mapValue(d.root, "data")
	// Decode everything except data, then data by hand.
	stripped := *d.root
	stripped.Content = nil
	for i := 0; i+1 < len(d.root.Content); i += 2 {
		if k := d.root.Content[i].Value; k != "data" && k != "binaryData" {
			stripped.Content = append(stripped.Content, d.root.Content[i], d.root.Content[i+1])
		}
	}
	if err := decode(&stripped, &cm); err != nil {
		return nil, []diag{{file: d.file, line: d.root.Line, col: d.root.Column, msg: "not a valid ConfigMap: " + err.Error()}}
	}
	obj := objectName(cm.Namespace, cm.Name)
	if data != nil {
		if data.Kind != yaml.MappingNode {
			diags = append(diags, diag{file: d.file, object: obj, key: "data", line: data.Line, col: data.Column,
				msg: "data must be a mapping of keys to strings", snippet: d.snippetAt(data.Line, data.Column)})
		} else {
			cm.Data = map[string]string{}
			for i := 0; i+1 < len(data.Content); i += 2 {
				k, v := data.Content[i], data.Content[i+1]
				if v.Kind != yaml.ScalarNode || (v.Tag != "!!str" && v.Tag != "!!null") {
					diags = append(diags, diag{file: d.file, object: obj, key: k.Value, line: v.Line, col: v.Column,
						msg:     fmt.Sprintf("ConfigMap data values must be strings: quote it (\"%s\")", v.Value),
						snippet: d.snippetAt(v.Line, v.Column)})
					continue
				}
				cm.Data[k.Value] = v.Value
			}
		}
	}
	if bin := mapValue(d.root, "binaryData"); bin != nil && bin.Kind == yaml.MappingNode {
		cm.BinaryData = map[string][]byte{}
		for i := 0; i+1 < len(bin.Content); i += 2 {
			cm.BinaryData[bin.Content[i].Value] = nil
		}
	}
	return &cm, diags
}

// position maps a problem's position inside a data value to the file.
func (d document) position(p policies.Problem) (line, col int) {
	data := mapValue(d.root, "data")
	switch {
	case p.Key == "":
		if k, _ := mapEntry(d.root, "metadata"); k != nil {
			return k.Line, k.Column
		}
		return d.root.Line, d.root.Column
	case data == nil:
		return 0, 0
	}
	k, v := mapEntry(data, p.Key)
	if k == nil {
		k, v = mapEntry(mapValue(d.root, "binaryData"), p.Key)
		if k == nil {
			return 0, 0
		}
	}
	if p.Line == 0 {
		return k.Line, k.Column
	}
	switch v.Style {
	case yaml.LiteralStyle:
		first := v.Line + 1
		indent := d.blockIndent(first)
		return v.Line + p.Line, indent + p.Column
	case yaml.FoldedStyle:
		if p.Line == 1 {
			return d.foldedPosition(v.Line+1, p.Column)
		}
		return v.Line + 1, d.blockIndent(v.Line+1) + 1
	case yaml.DoubleQuotedStyle, yaml.SingleQuotedStyle:
		if p.Line == 1 && !strings.Contains(v.Value, "\n") {
			return v.Line, v.Column + 1 + rawOffset(d.line(v.Line), v.Column, p.Column, v.Style)
		}
	default: // plain
		if p.Line == 1 && !strings.Contains(v.Value, "\n") {
			return v.Line, v.Column + p.Column - 1
		}
	}
	return v.Line, v.Column
}

func (d document) line(n int) string {
	if n < 1 || n > len(d.lines) {
		return ""
	}
	return d.lines[n-1]
}

// blockIndent is the indentation of a block scalar's content (the first
// non-blank line from first on).
func (d document) blockIndent(first int) int {
	for n := first; n <= len(d.lines); n++ {
		l := d.line(n)
		if strings.TrimSpace(l) == "" {
			continue
		}
		return len(l) - len(strings.TrimLeft(l, " "))
	}
	return 0
}

// foldedPosition maps column col of a folded scalar's first content line
// (its file lines joined by spaces) to a file position.
func (d document) foldedPosition(first, col int) (int, int) {
	indent := d.blockIndent(first)
	remaining := col - 1
	for n := first; n <= len(d.lines); n++ {
		l := []rune(d.line(n))
		if len(l) <= indent || strings.TrimSpace(string(l)) == "" {
			break
		}
		text := l[indent:]
		if remaining <= len(text) {
			return n, indent + remaining + 1
		}
		remaining -= len(text) + 1
	}
	return first, indent + 1
}

// rawOffset is how many runes of the raw quoted scalar starting at column
// start (the quote) precede content column col: escapes take 2+ runes.
func rawOffset(raw string, start, col int, style yaml.Style) int {
	r := []rune(raw)
	i := start // index of the first rune after the opening quote (start is 1-based)
	for c := 1; c < col && i < len(r); c++ {
		switch {
		case style == yaml.DoubleQuotedStyle && r[i] == '\\' && i+1 < len(r):
			switch r[i+1] {
			case 'x':
				i += 4
			case 'u':
				i += 6
			case 'U':
				i += 10
			default:
				i += 2
			}
		case style == yaml.SingleQuotedStyle && r[i] == '\'' && i+1 < len(r) && r[i+1] == '\'':
			i += 2
		default:
			i++
		}
	}
	return i - start
}

// policyDiags turns a ParseError into file diagnostics.
func (d document) policyDiags(pe *policies.ParseError) []diag {
	var out []diag
	for _, p := range pe.Problems {
		line, col := d.position(p)
		dg := diag{file: d.file, object: objectName(pe.Namespace, pe.Name), key: p.Key, line: line, col: col, msg: p.Message}
		if line > 0 {
			dg.snippet = d.snippetAt(line, col)
		}
		out = append(out, dg)
	}
	return out
}

// loadPolicies parses every policy ConfigMap document of files. Documents
// of other kinds are skipped.
func loadPolicies(files []string) (ps []*policies.Policy, diags []diag, err error) {
	for _, f := range files {
		docs, err := readDocuments(f)
		if err != nil {
			diags = append(diags, diag{file: f, msg: err.Error()})
			continue
		}
		for _, d := range docs {
			if d.kind != "ConfigMap" {
				continue
			}
			cm, ds := d.configMap()
			if cm == nil {
				diags = append(diags, ds...)
				continue
			}
			p, err := policies.Parse(cm)
			var pe *policies.ParseError
			switch {
			case errors.As(err, &pe):
				ds = append(ds, d.policyDiags(pe)...)
			case err != nil:
				ds = append(ds, diag{file: f, object: objectName(cm.Namespace, cm.Name), msg: err.Error()})
			case len(ds) == 0:
				ps = append(ps, p)
			}
			sort.SliceStable(ds, func(i, j int) bool { return ds[i].line < ds[j].line })
			diags = append(diags, ds...)
		}
	}
	return ps, diags, nil
}

// objectName is "namespace/name", or "name" without a namespace.
func objectName(namespace, name string) string {
	if namespace == "" {
		return name
	}
	return namespace + "/" + name
}
