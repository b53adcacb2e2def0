// Command roamctl checks and explains roam policies.
//
//	roamctl policy check FILE...
//	roamctl policy explain --pod pod.yaml --nodes nodes.yaml [--policies dir]
//	roamctl policy explain --kubeconfig ~/.kube/config --pod namespace/name
//
// check validates policy ConfigMaps offline with the same code the
// scheduler and detector use and prints compiler-style errors; it exits 1
// on any error. explain shows, per node, whether each require of the
// policies governing a pod holds, each score, and the resulting rank.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
)

const usage = `usage:
  roamctl policy check FILE...
  roamctl policy explain --pod pod.yaml --nodes nodes.yaml [--policies dir|file]... [--global-namespace ns]
  roamctl policy explain --kubeconfig FILE --pod namespace/name|pod.yaml [--nodes nodes.yaml] [--policies dir|file]...
`

func main() {
	os.Exit(run(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
}

// run executes roamctl with args and returns the exit code: 0 success, 1
// invalid policies or failed command, 2 usage error.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) < 2 || args[0] != "policy" {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[1] {
	case "check":
		return runCheck(args[2:], stdout, stderr)
	case "explain":
		return runExplain(ctx, args[2:], stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	}
	fmt.Fprintf(stderr, "roamctl: unknown command %q\n%s", "policy "+args[1], usage)
	return 2
}
