package main

import (
	"fmt"
	"io"
)

// runCheck implements `roamctl policy check FILE...`.
func runCheck(files []string, stdout, stderr io.Writer) int {
	if len(files) == 0 {
		fmt.Fprint(stderr, "roamctl policy check: no files\n"+usage)
		return 2
	}
	ps, diags, err := loadPolicies(files)
	if err != nil {
		fmt.Fprintf(stderr, "roamctl: %v\n", err)
		return 1
	}
	for _, d := range diags {
		fmt.Fprintln(stderr, d)
	}
	if len(diags) > 0 {
		fmt.Fprintf(stderr, "%d problem(s)\n", len(diags))
		return 1
	}
	for _, p := range ps {
		fmt.Fprintf(stdout, "%s: valid\n", p.Key())
	}
	if len(ps) == 0 {
		fmt.Fprintln(stderr, "roamctl policy check: no policy ConfigMaps found")
		return 1
	}
	return 0
}
