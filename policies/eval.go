package policies

import (
	"errors"
	"fmt"

	"github.com/expr-lang/expr/vm"
)

// Evaluator runs compiled programs with a reused VM: 0 allocations per
// evaluation. Not safe for concurrent use: one per goroutine, or pooled.
type Evaluator struct {
	vm vm.VM
	// noFast forces every evaluation through the VM (tests compare both).
	noFast bool
	// env is scratch space for RequireWith, ScoreWith and Memoize.
	env Env
}

// NewEvaluator returns an Evaluator with the package's bounds applied.
func NewEvaluator() *Evaluator {
	ev := &Evaluator{}
	ev.vm.MemoryBudget = MemoryBudget
	return ev
}

// EvalError is an expression that failed at run time (for example a
// memory budget exceeded, or a type assertion on a label that is absent):
// the node is rejected with this reason.
type EvalError struct {
	Policy string // namespace/name
	Key    string // match, require or score
	Err    error
}

func (e *EvalError) Error() string {
	return fmt.Sprintf("policy %s: %s: %v", e.Policy, e.Key, e.Err)
}

func (e *EvalError) Unwrap() error { return e.Err }

// Match reports whether the policy governs the pod in env (false when the
// policy has no match expression).
func (p *Policy) Match(ev *Evaluator, env *Env) (bool, error) {
	if p.match == nil {
		return false, nil
	}
	return p.evalBool(ev, p.match, env)
}

// Require reports whether the node in env satisfies the policy for the pod
// (true when the policy has no require expression).
func (p *Policy) Require(ev *Evaluator, env *Env) (bool, error) {
	if p.require == nil {
		return true, nil
	}
	return p.evalBool(ev, p.require, env)
}

// Score is the unweighted score of the node in env (0 when !HasScore).
func (p *Policy) Score(ev *Evaluator, env *Env) (float64, error) {
	if p.score == nil {
		return 0, nil
	}
	if env == nil {
		return 0, &EvalError{Policy: p.Key(), Key: p.score.key, Err: errNilEnv}
	}
	if p.score.fast.num != nil && !ev.noFast {
		return p.score.fast.num(env), nil
	}
	out, err := ev.run(p.score, env)
	if err != nil {
		return 0, &EvalError{Policy: p.Key(), Key: p.score.key, Err: err}
	}
	switch v := out.(type) {
	case float64:
		return v, nil
	case int:
		return float64(v), nil
	}
	return 0, &EvalError{Policy: p.Key(), Key: p.score.key, Err: fmt.Errorf("result %T is not a number", out)}
}

var errNilEnv = errors.New("no environment")

func (p *Policy) evalBool(ev *Evaluator, prog *program, env *Env) (bool, error) {
	if env == nil {
		return false, &EvalError{Policy: p.Key(), Key: prog.key, Err: errNilEnv}
	}
	if prog.fast.boolean != nil && !ev.noFast {
		return prog.fast.boolean(env), nil
	}
	out, err := ev.run(prog, env)
	if err != nil {
		return false, &EvalError{Policy: p.Key(), Key: prog.key, Err: err}
	}
	b, ok := out.(bool)
	if !ok {
		return false, &EvalError{Policy: p.Key(), Key: prog.key, Err: fmt.Errorf("result %T is not a boolean", out)}
	}
	return b, nil
}

// run evaluates prog in the reused VM; a panic becomes an error.
func (ev *Evaluator) run(prog *program, env *Env) (out any, err error) {
	defer func() {
		if r := recover(); r != nil {
			out, err = nil, fmt.Errorf("evaluation panicked: %v", r)
		}
	}()
	if ev.vm.MemoryBudget == 0 {
		ev.vm.MemoryBudget = MemoryBudget
	}
	return ev.vm.Run(prog.prog, env)
}
