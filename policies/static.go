package policies

import "github.com/expr-lang/expr/ast"

// A require's node-object part.
//
// Some of what a require reads of a node cannot change unless the Node
// object itself changes: its name, labels, annotations, context, zone,
// location, capacity, battery and taints. Its free devices (node.devices)
// change with the pods placed on it, and the pod is the pod. The
// node-object part of a require is the conjunction of its top-level
// `&&` operands that read only the former (and are in the fast subset):
// where it is false the require is false for every pod, whatever pods
// the node runs, so a scheduler may leave such nodes out before filtering
// (and preemption, which frees devices by removing pods, cannot help on
// them). The example policy's require `node.context == "hospital" &&
// node.devices["roam.dev/camera"] >= 1` has `node.context == "hospital"`
// as its node-object part.

// buildStatic returns the evaluator of the node-object part of a checked
// require tree, or nil when no operand qualifies.
func buildStatic(n ast.Node) func(*Env) bool {
	var parts []func(*Env) bool
	for _, op := range conjuncts(n, nil) {
		if node, pod := roots(op); !node || pod || readsFreeDevices(op) {
			continue
		}
		if v, ok := (&fastCompiler{}).compile(op); ok && v.t == tBool {
			parts = append(parts, v.b)
		}
	}
	switch len(parts) {
	case 0:
		return nil
	case 1:
		return parts[0]
	}
	return func(e *Env) bool {
		for _, part := range parts {
			if !part(e) {
				return false
			}
		}
		return true
	}
}

// conjuncts appends the operands of n's top-level `&&` chain to out (n
// itself when it is not one).
func conjuncts(n ast.Node, out []ast.Node) []ast.Node {
	if b, ok := n.(*ast.BinaryNode); ok && (b.Operator == "&&" || b.Operator == "and") {
		return conjuncts(b.Right, conjuncts(b.Left, out))
	}
	return append(out, n)
}

// readsFreeDevices reports whether n reads node.devices (the fast subset
// reads the node only through constant member names).
func readsFreeDevices(n ast.Node) bool {
	if m, ok := n.(*ast.MemberNode); ok {
		if id, ok := m.Node.(*ast.IdentifierNode); ok && id.Value == "node" {
			prop, ok := m.Property.(*ast.StringNode)
			if !ok || prop.Value == "devices" {
				return true
			}
		}
	}
	for _, ch := range children(n) {
		if readsFreeDevices(ch) {
			return true
		}
	}
	return false
}

// HasStaticRequire reports whether p's require has a node-object part:
// operands of its top-level `&&` that read only the Node object (not the
// pod, not node.devices). Where that part is false, the require is false
// for every pod and every set of pods on the node.
func (p *Policy) HasStaticRequire() bool { return p.require != nil && p.require.static != nil }

// StaticRequire evaluates p's node-object require part on node (true when
// p has none); ev is scratch space. It allocates nothing.
func (p *Policy) StaticRequire(ev *Evaluator, node *NodeEnv) bool {
	if !p.HasStaticRequire() {
		return true
	}
	ev.env.Node = *node
	ok := p.require.static(&ev.env)
	ev.env = Env{}
	return ok
}

// MemoStaticRequire returns the node-object require part's result from m,
// the memo of a node version (known is false when m is not p's).
func (p *Policy) MemoStaticRequire(m *NodeMemo) (ok, known bool) {
	if !p.HasStaticRequire() {
		return true, true
	}
	if m == nil || m.policy != p {
		return false, false
	}
	return m.static, true
}
