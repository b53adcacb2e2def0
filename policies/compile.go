package policies

import (
	"errors"
	"fmt"
	"strings"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/file"
	"github.com/expr-lang/expr/parser"
	"github.com/expr-lang/expr/vm"
)

// Bounds applied to every expression.
const (
	// MaxNodes bounds the size of an expression's syntax tree.
	MaxNodes = 500
	// MaxIterationDepth bounds how deeply iterating builtins (all, any, map,
	// filter, count, …) may nest: two levels over a 300-item collection are
	// 90 000 steps, three would be 27 000 000.
	MaxIterationDepth = 2
	// MemoryBudget bounds what one evaluation may allocate in the VM (range
	// and array elements, as expr counts them).
	MemoryBudget = 100_000
	// MaxExpressionBytes bounds the length of one expression's source.
	MaxExpressionBytes = 8 << 10
)

// disabledBuiltins are builtins a policy cannot use: time-dependent ones
// (answers would differ between the scheduler and the detector) and ones
// whose allocations the VM memory budget does not see.
func disabledBuiltins() []string {
	return []string{"now", "date", "timezone", "repeat", "reduce", "toJSON", "fromJSON", "toBase64", "fromBase64"}
}

// kind is what an expression must evaluate to.
type kind int

const (
	kindBool kind = iota
	kindNumber
)

// program is one compiled expression of a policy.
type program struct {
	key    string
	source string
	prog   *vm.Program
	fast   fastExpr // optional allocation-free evaluator of the same program
	memo   *memoPlan
	// static is a require's node-object part (see static.go), nil when it
	// has none.
	static func(*Env) bool
}

// programs holds a policy's compiled expressions; nil when absent.
type programs struct {
	match, require, score *program
}

// Sources returns the source text of the policy's match, require and score
// expressions ("" when absent).
func (p *Policy) Sources() (match, require, score string) {
	return p.match.src(), p.require.src(), p.score.src()
}

func (p *program) src() string {
	if p == nil {
		return ""
	}
	return p.source
}

func distanceFunc(params ...any) (any, error) {
	a, ok1 := params[0].(Point)
	b, ok2 := params[1].(Point)
	if !ok1 || !ok2 {
		return nil, fmt.Errorf("distance(a, b) wants two points (node.location, pod.target), got %T and %T", params[0], params[1])
	}
	return Distance(a, b), nil
}

func compileOptions(k kind) []expr.Option {
	opts := []expr.Option{
		expr.Env(Env{}),
		expr.MaxNodes(MaxNodes),
		expr.Function("distance", distanceFunc, new(func(Point, Point) float64)),
	}
	for _, name := range disabledBuiltins() {
		opts = append(opts, expr.DisableBuiltin(name))
	}
	switch k {
	case kindBool:
		opts = append(opts, expr.AsBool())
	case kindNumber:
		opts = append(opts, expr.AsFloat64())
	}
	return opts
}

// compile compiles one expression of key; the problem is non-nil when the
// source is invalid.
func compile(key, source string, k kind) (*program, *Problem) {
	if strings.TrimSpace(source) == "" {
		return nil, &Problem{Key: key, Message: "is empty: write an expression or remove the key"}
	}
	if len(source) > MaxExpressionBytes {
		return nil, &Problem{Key: key, Message: fmt.Sprintf("expression is %d bytes long, the limit is %d", len(source), MaxExpressionBytes)}
	}
	// Parse first on our own to bound nested iteration before the checker
	// and compiler see the tree.
	tree, err := parser.ParseWithConfig(source, nil)
	if err == nil {
		if n := tooDeep(tree.Node, 0); n != nil {
			line, col := lineCol(source, n.Location().From)
			return nil, positioned(key, source, line, col,
				fmt.Sprintf("iteration nested more than %d levels deep (all/any/map/filter… inside each other): too costly to evaluate on every node", MaxIterationDepth))
		}
	}
	prog, err := expr.Compile(source, compileOptions(k)...)
	if err != nil {
		return nil, compileProblem(key, source, k, err)
	}
	p := &program{key: key, source: source, prog: prog}
	p.fast = buildFast(prog.Node(), k)
	if key != KeyMatch {
		p.memo = buildMemo(prog.Node(), k)
	}
	if key == KeyRequire {
		p.static = buildStatic(prog.Node())
	}
	return p, nil
}

// compileProblem turns an expr compile error into a Problem.
func compileProblem(key, source string, k kind, err error) *Problem {
	var fe *file.Error
	if errors.As(err, &fe) && fe.Line > 0 {
		return positioned(key, source, fe.Line, fe.Column+1, improveMessage(fe.Message))
	}
	msg := improveMessage(err.Error())
	switch {
	case strings.HasPrefix(msg, "expected bool, but got "):
		msg = "must be a boolean expression (true or false), but it is " + strings.TrimPrefix(msg, "expected bool, but got ")
	case strings.HasPrefix(msg, "expected float64, but got "):
		msg = "must be a number, but it is " + strings.TrimPrefix(msg, "expected float64, but got ")
	}
	_ = k
	return positioned(key, source, 1, 1, msg)
}

// envFields are the names an expression may use inside a type of the
// environment.
func envFields(typ string) []string {
	switch typ {
	case "NodeEnv":
		return []string{"name", "labels", "annotations", "context", "zone", "location", "devices", "capacity", "battery", "taints"}
	case "PodEnv":
		return []string{"name", "namespace", "labels", "annotations", "target"}
	case "Point":
		return []string{"x", "y", "known"}
	case "Env":
		return []string{"node", "pod"}
	}
	return nil
}

// improveMessage adds "did you mean …?" to unknown-field errors.
func improveMessage(msg string) string {
	msg = strings.TrimSpace(msg)
	if strings.Contains(msg, "exceeds maximum allowed nodes") {
		return fmt.Sprintf("expression is too large (more than %d syntax nodes)", MaxNodes)
	}
	// expr says e.g. "type policies.NodeEnv has no field contxt" or
	// "unknown name nod".
	if rest, ok := strings.CutPrefix(msg, "type policies."); ok {
		typ, field, ok := strings.Cut(rest, " has no field ")
		if ok {
			msg = fmt.Sprintf("%s has no field %s", envName(typ), field)
			if s := nearest(field, envFields(typ)); s != "" {
				msg += fmt.Sprintf(" (did you mean %s?)", s)
			} else if names := envFields(typ); len(names) > 0 {
				msg += " (fields: " + strings.Join(names, ", ") + ")"
			}
			return msg
		}
	}
	if name, ok := strings.CutPrefix(msg, "unknown name "); ok {
		for _, d := range disabledBuiltins() {
			if name == d {
				return fmt.Sprintf("%s() is not available in policies (time-dependent or unbounded)", name)
			}
		}
		if s := nearest(name, append(envFields("Env"), "distance")); s != "" {
			msg += fmt.Sprintf(" (did you mean %s?)", s)
		} else {
			msg += " (the environment has node, pod and distance(a, b))"
		}
	}
	return msg
}

func envName(typ string) string {
	switch typ {
	case "NodeEnv":
		return "node"
	case "PodEnv":
		return "pod"
	case "Point":
		return "point"
	}
	return typ
}

// tooDeep returns the first iterating builtin nested deeper than
// MaxIterationDepth, or nil.
func tooDeep(n ast.Node, depth int) ast.Node {
	if n == nil {
		return nil
	}
	if _, ok := n.(*ast.PredicateNode); ok {
		depth++
	}
	if b, ok := n.(*ast.BuiltinNode); ok && depth+1 > MaxIterationDepth {
		for _, a := range b.Arguments {
			if _, ok := a.(*ast.PredicateNode); ok {
				return b
			}
		}
	}
	for _, c := range children(n) {
		if bad := tooDeep(c, depth); bad != nil {
			return bad
		}
	}
	return nil
}

// children lists the direct children of n.
func children(n ast.Node) []ast.Node {
	switch n := n.(type) {
	case *ast.UnaryNode:
		return []ast.Node{n.Node}
	case *ast.BinaryNode:
		return []ast.Node{n.Left, n.Right}
	case *ast.ChainNode:
		return []ast.Node{n.Node}
	case *ast.MemberNode:
		return []ast.Node{n.Node, n.Property}
	case *ast.SliceNode:
		return []ast.Node{n.Node, n.From, n.To}
	case *ast.CallNode:
		return append([]ast.Node{n.Callee}, n.Arguments...)
	case *ast.BuiltinNode:
		out := append([]ast.Node(nil), n.Arguments...)
		if n.Map != nil {
			out = append(out, n.Map)
		}
		return out
	case *ast.PredicateNode:
		return []ast.Node{n.Node}
	case *ast.ConditionalNode:
		return []ast.Node{n.Cond, n.Exp1, n.Exp2}
	case *ast.VariableDeclaratorNode:
		return []ast.Node{n.Value, n.Expr}
	case *ast.SequenceNode:
		return n.Nodes
	case *ast.ArrayNode:
		return n.Nodes
	case *ast.MapNode:
		return n.Pairs
	case *ast.PairNode:
		return []ast.Node{n.Key, n.Value}
	}
	return nil
}

// lineCol converts a rune offset into a 1-based line and column.
func lineCol(src string, runeOffset int) (line, col int) {
	line, col = 1, 1
	i := 0
	for _, r := range src {
		if i == runeOffset {
			break
		}
		if r == '\n' {
			line++
			col = 1
		} else {
			col++
		}
		i++
	}
	return line, col
}

// positioned builds a Problem with a snippet of line of src and a caret
// under col (both 1-based).
func positioned(key, src string, line, col int, msg string) *Problem {
	return &Problem{Key: key, Line: line, Column: col, Message: msg, Snippet: snippet(src, line, col)}
}

// snippet renders line of src with a caret under col.
func snippet(src string, line, col int) string {
	lines := strings.Split(src, "\n")
	if line < 1 || line > len(lines) {
		return ""
	}
	return Snippet(lines[line-1], col)
}

// Snippet renders one line of text with a caret under col (1-based); very
// long lines are cut to a window around col.
func Snippet(text string, col int) string {
	const maxWidth, before, after = 120, 60, 50
	r := []rune(strings.ReplaceAll(strings.TrimRight(text, "\r"), "\t", " "))
	pad := col - 1
	if pad > len(r) {
		pad = len(r)
	}
	if pad < 0 {
		pad = 0
	}
	prefix, suffix := "", ""
	if len(r) <= maxWidth {
		return " | " + string(r) + "\n | " + strings.Repeat(" ", pad) + "^"
	}
	if pad > before {
		r = r[pad-before:]
		pad = before + 1
		prefix = "…"
	}
	if len(r) > pad+after {
		r = r[:pad+after]
		suffix = "…"
	}
	return " | " + prefix + string(r) + suffix + "\n | " + strings.Repeat(" ", pad) + "^"
}

// nearest returns the candidate closest to s when it is close enough to be
// a likely typo, else "".
func nearest(s string, candidates []string) string {
	best, bestD := "", 1<<30
	for _, c := range candidates {
		if strings.EqualFold(s, c) || (len(s) >= 3 && strings.HasPrefix(strings.ToLower(c), strings.ToLower(s))) {
			return c
		}
		if d := levenshtein(strings.ToLower(s), strings.ToLower(c)); d < bestD {
			best, bestD = c, d
		}
	}
	limit := 2
	if len(s) >= 9 {
		limit = 3
	}
	if bestD <= limit && bestD < len(s) {
		return best
	}
	return ""
}

func levenshtein(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	prev := make([]int, len(rb)+1)
	cur := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur[0] = i
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(rb)]
}
