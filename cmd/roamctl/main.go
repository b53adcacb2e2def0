// Command roamctl checks and explains roam policies and shows the fleet.
//
//	roamctl policy check FILE...
//	roamctl policy explain --pod pod.yaml --nodes nodes.yaml [--policies dir]
//	roamctl policy explain --kubeconfig ~/.kube/config --pod namespace/name
//	roamctl fleet [-o wide|json|yaml] [--watch]
//	roamctl why POD [-n namespace]
//
// check validates policy ConfigMaps offline with the same code the
// scheduler and detector use and prints compiler-style errors; it exits 1
// on any error. explain shows, per node, whether each require of the
// policies governing a pod holds, each score, and the resulting rank.
// fleet is one table of the robots of a live cluster; why says why a pod
// runs on its robot or why it is Pending.
//
// Installed (or linked) as kubectl-roam on the PATH, it is a kubectl
// plugin: kubectl roam fleet, kubectl roam why POD.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/roam-dev/roam/internal/version"
)

const usage = `usage:
  roamctl policy check FILE...
  roamctl policy explain --pod pod.yaml --nodes nodes.yaml [--policies dir|file]... [--global-namespace ns]
  roamctl policy explain --kubeconfig FILE --pod namespace/name|pod.yaml [--nodes nodes.yaml] [--policies dir|file]...
  roamctl fleet [-o wide|json|yaml] [--watch] [--all] [--kubeconfig FILE] [--context NAME]
  roamctl why POD [-n NAMESPACE] [--kubeconfig FILE] [--context NAME]
  roamctl version
`

// usageFor is the usage text as prog ("roamctl" or "kubectl roam") is called.
func usageFor(prog string) string {
	return strings.ReplaceAll(usage, "roamctl ", prog+" ")
}

func main() {
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	prog := "roamctl"
	if strings.HasPrefix(filepath.Base(os.Args[0]), "kubectl-roam") {
		prog = "kubectl roam"
	}
	os.Exit(runAs(ctx, prog, os.Args[1:], os.Stdout, os.Stderr))
}

// run executes roamctl with args and returns the exit code: 0 success, 1
// invalid policies or failed command, 2 usage error.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return runAs(ctx, "roamctl", args, stdout, stderr)
}

// runAs is run with the program name the messages use.
func runAs(ctx context.Context, prog string, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usageFor(prog))
		return 2
	}
	switch args[0] {
	case "fleet":
		return runFleet(ctx, prog, args[1:], stdout, stderr)
	case "why":
		return runWhy(ctx, prog, args[1:], stdout, stderr)
	case "version", "--version", "-version":
		version.Print(stdout, "roamctl")
		return 0
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usageFor(prog))
		return 0
	case "policy":
	default:
		fmt.Fprintf(stderr, "%s: unknown command %q\n%s", prog, args[0], usageFor(prog))
		return 2
	}
	if len(args) < 2 {
		fmt.Fprint(stderr, usageFor(prog))
		return 2
	}
	switch args[1] {
	case "check":
		return runCheck(args[2:], stdout, stderr)
	case "explain":
		return runExplain(ctx, args[2:], stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usageFor(prog))
		return 0
	}
	fmt.Fprintf(stderr, "%s: unknown command %q\n%s", prog, "policy "+args[1], usageFor(prog))
	return 2
}
