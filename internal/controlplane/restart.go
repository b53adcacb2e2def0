package controlplane

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"k8s.io/client-go/kubernetes"
)

// apiserverProc is a kube-apiserver started again by StartAPIServer.
type apiserverProc struct {
	cmd  *exec.Cmd
	done chan struct{}
}

// StopAPIServer stops kube-apiserver as an operator restarting it would
// (SIGTERM, then SIGKILL after 20 s) and waits until it has exited; etcd,
// the certificates and kube-controller-manager stay. Clients see the
// connection refused until StartAPIServer.
func (cp *ControlPlane) StopAPIServer(ctx context.Context) error {
	cp.apiMu.Lock()
	defer cp.apiMu.Unlock()
	if cp.apiArgs != nil {
		return errors.New("kube-apiserver is already stopped")
	}
	pid, args, err := cp.apiserverProcess()
	if err != nil {
		return err
	}
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		return fmt.Errorf("stopping kube-apiserver (pid %d): %w", pid, err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for alive(pid) && processName(pid) == "kube-apiserver" {
		if time.Now().After(deadline) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	if cp.apiserver != nil {
		<-cp.apiserver.done
		cp.apiserver = nil
	}
	cp.apiArgs = args
	return nil
}

// StartAPIServer starts kube-apiserver again after StopAPIServer, with the
// same binary, flags, ports, certificates and etcd, and waits until it
// answers /readyz.
func (cp *ControlPlane) StartAPIServer(ctx context.Context) error {
	cp.apiMu.Lock()
	defer cp.apiMu.Unlock()
	if cp.apiArgs == nil {
		return errors.New("kube-apiserver was not stopped")
	}
	cmd := exec.Command(cp.apiArgs[0], cp.apiArgs[1:]...)
	out := cp.output
	if out == nil {
		out = io.Discard
	}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting kube-apiserver again: %w", err)
	}
	p := &apiserverProc{cmd: cmd, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(p.done) }()
	cp.apiserver, cp.apiArgs = p, nil
	recordChildren(cp)

	cs, err := kubernetes.NewForConfig(cp.Config)
	if err != nil {
		return err
	}
	timeout := time.NewTimer(cp.startTimeout)
	defer timeout.Stop()
	for {
		body, err := cs.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		if err == nil && bytes.HasPrefix(body, []byte("ok")) {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-p.done:
			return errors.New("kube-apiserver exited after its restart")
		case <-timeout.C:
			return fmt.Errorf("kube-apiserver not ready %s after its restart: %v", cp.startTimeout, err)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// apiserverProcess finds the running kube-apiserver child and its command
// line.
func (cp *ControlPlane) apiserverProcess() (int, []string, error) {
	for _, pid := range childPIDs(os.Getpid()) {
		if processName(pid) != "kube-apiserver" {
			continue
		}
		raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err != nil {
			return 0, nil, fmt.Errorf("reading kube-apiserver's command line: %w", err)
		}
		args := strings.Split(strings.TrimSuffix(string(raw), "\x00"), "\x00")
		return pid, args, nil
	}
	return 0, nil, errors.New("no kube-apiserver child process")
}

// stopRestartedAPIServer stops a kube-apiserver StartAPIServer started.
func (cp *ControlPlane) stopRestartedAPIServer() {
	cp.apiMu.Lock()
	defer cp.apiMu.Unlock()
	p := cp.apiserver
	if p == nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(20 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
	cp.apiserver = nil
}
