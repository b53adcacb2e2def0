// Package version holds the version and source revision of roam's binaries,
// stamped at link time:
//
//	go build -ldflags "-X github.com/roam-dev/roam/internal/version.version=v0.1.0 \
//	  -X github.com/roam-dev/roam/internal/version.revision=<commit>"
//
// `make build` and `make images` stamp them from git.
package version

import (
	"fmt"
	"io"
	"runtime"
)

// Set by the linker (-X); see the package comment.
var (
	version  = "dev"
	revision = ""
)

// Version is the build's version ("dev" when not stamped).
func Version() string { return version }

// Revision is the source revision the build was made from ("" when unknown).
func Revision() string { return revision }

// String is the one-line version report of program, e.g.
// "roam-detector v0.1.0 (revision 0123abc, go1.26.8 linux/amd64)".
func String(program string) string {
	rev := revision
	if rev == "" {
		rev = "unknown"
	}
	return fmt.Sprintf("%s %s (revision %s, %s %s/%s)", program, version, rev, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}

// Requested reports whether args ask for the version: a --version (or
// -version, --version=true) flag before any "--".
func Requested(args []string) bool {
	for _, a := range args {
		switch a {
		case "--":
			return false
		case "--version", "-version", "--version=true", "-version=true":
			return true
		}
	}
	return false
}

// Print writes String(program) and a newline to w.
func Print(w io.Writer, program string) {
	fmt.Fprintln(w, String(program))
}
