package testutil

import (
	"os"
	"testing"
)

// RequireRoot skips a test that needs root (real cgroups, for instance)
// when it runs as another user, and fails it instead when CI=true: in CI
// these tests must run, never silently skip.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	SkipOrFailInCI(t, "needs root")
}

// SkipOrFailInCI skips the test with reason, or fails it when CI=true.
func SkipOrFailInCI(t testing.TB, reason string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("CI=true and the test would skip: %s", reason)
	}
	t.Skip(reason)
}
