package controlplane_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/roam-dev/roam/internal/controlplane"
)

// signalHelperEnv makes the test binary act as a program holding a control
// plane (TestSignalHelper) instead of running tests.
const signalHelperEnv = "ROAM_SIGNAL_HELPER"

// TestSignalHelper is the program TestInterruptStopsTheControlPlane
// interrupts: it starts etcd and kube-apiserver, prints their PIDs and
// waits to be interrupted.
func TestSignalHelper(t *testing.T) {
	mode := os.Getenv(signalHelperEnv)
	if mode == "" {
		t.Skip("helper process for TestInterruptStopsTheControlPlane")
	}
	cp, err := controlplane.Start(context.Background(), controlplane.Options{GracefulSignals: mode == "graceful"})
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(2)
	}
	defer func() { _ = cp.Stop() }()
	fmt.Println("pids:", strings.Trim(fmt.Sprint(controlplane.ChildPIDs()), "[]"))
	time.Sleep(5 * time.Minute) // the signal ends it (os.Exit in the control plane's watcher)
}

// TestInterruptStopsTheControlPlane: Ctrl-C never leaves etcd or
// kube-apiserver behind. By default the first interrupt stops them and
// exits; with GracefulSignals the first is the caller's (the process and
// its control plane keep running) and the second stops and exits.
func TestInterruptStopsTheControlPlane(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	for _, mode := range []string{"plain", "graceful"} {
		t.Run(mode, func(t *testing.T) {
			cmd := exec.Command(os.Args[0], "-test.run=^TestSignalHelper$", "-test.v=false")
			cmd.Env = append(os.Environ(), signalHelperEnv+"="+mode, "TMPDIR="+t.TempDir())
			out, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			defer func() { _ = cmd.Process.Kill() }()
			var pids []int
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				if rest, ok := strings.CutPrefix(sc.Text(), "pids: "); ok {
					for _, f := range strings.Fields(rest) {
						pid, _ := strconv.Atoi(f)
						pids = append(pids, pid)
					}
					break
				}
			}
			if len(pids) != 2 {
				t.Fatalf("helper reported child PIDs %v, want etcd and kube-apiserver", pids)
			}
			go func() { _, _ = io.Copy(io.Discard, out) }()
			exited := make(chan error, 1)
			go func() { exited <- cmd.Wait() }()

			if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
				t.Fatal(err)
			}
			if mode == "graceful" {
				select {
				case err := <-exited:
					t.Fatalf("first interrupt ended the process (%v); GracefulSignals leaves it to the caller", err)
				case <-time.After(2 * time.Second):
				}
				for _, pid := range pids {
					if syscall.Kill(pid, 0) != nil {
						t.Errorf("child %d stopped on the first interrupt", pid)
					}
				}
				if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
					t.Fatal(err)
				}
			}
			select {
			case err := <-exited:
				var ee *exec.ExitError
				if !errors.As(err, &ee) || ee.ExitCode() != 130 {
					t.Errorf("exit after interrupt: %v, want status 130", err)
				}
			case <-time.After(60 * time.Second):
				t.Fatal("process still running 60 s after the interrupt")
			}
			for _, pid := range pids {
				if syscall.Kill(pid, 0) == nil {
					t.Errorf("child %d still running after the process exited", pid)
				}
			}
		})
	}
}
