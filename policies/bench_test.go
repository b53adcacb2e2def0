package policies

import "testing"

// The example policy of docs/policies.md against a node with 30 labels and 4 device
// types (see benchNode).
func benchmarkPolicy(b *testing.B, fast bool, score bool) {
	p := mustParse(b, exampleData())
	ev := NewEvaluator()
	ev.noFast = !fast
	env := benchEnv()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if score {
			if _, err := p.Score(ev, env); err != nil {
				b.Fatal(err)
			}
		} else if ok, err := p.Require(ev, env); !ok || err != nil {
			b.Fatal(ok, err)
		}
	}
}

func BenchmarkPolicyRequire(b *testing.B)   { benchmarkPolicy(b, true, false) }
func BenchmarkPolicyScore(b *testing.B)     { benchmarkPolicy(b, true, true) }
func BenchmarkPolicyRequireVM(b *testing.B) { benchmarkPolicy(b, false, false) }
func BenchmarkPolicyScoreVM(b *testing.B)   { benchmarkPolicy(b, false, true) }
