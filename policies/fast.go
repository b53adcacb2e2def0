package policies

import "github.com/expr-lang/expr/ast"

// fastExpr is an allocation-free evaluator for the common subset of
// expressions; fields are nil when the expression is outside that subset
// and the VM runs it instead.
type fastExpr struct {
	boolean func(*Env) bool
	num     func(*Env) float64
}

func buildFast(n ast.Node, k kind) fastExpr { return fastExpr{} }
