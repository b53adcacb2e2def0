package cluster

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/roam-dev/roam/internal/controlplane"
	"github.com/roam-dev/roam/scheduler/schedconfig"
)

// child is a roam binary the sim runs. It has its own process group (so a
// terminal's Ctrl-C reaches only the sim, which then stops it) and dies with
// the sim even when the sim is killed (Pdeathsig).
type child struct {
	name string
	cmd  *exec.Cmd
	log  *os.File
	done chan struct{}
	err  error
}

func startChild(name, path string, args []string, logPath string) (*child, error) {
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("%s binary not found at %s (run `make build`): %w", name, path, err)
	}
	log, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("creating %s log: %w", name, err)
	}
	cmd := exec.Command(path, args...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := cmd.Start(); err != nil {
		_ = log.Close()
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	c := &child{name: name, cmd: cmd, log: log, done: make(chan struct{})}
	go func() {
		c.err = cmd.Wait()
		close(c.done)
	}()
	return c, nil
}

// exited reports an error when the child has stopped on its own.
func (c *child) exited() error {
	select {
	case <-c.done:
		return fmt.Errorf("%s exited early (%v); see %s", c.name, c.err, c.log.Name())
	default:
		return nil
	}
}

// stop sends SIGTERM to the child's process group, then SIGKILL after 5 s.
func (c *child) stop() {
	pgid := c.cmd.Process.Pid
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	select {
	case <-c.done:
	case <-time.After(5 * time.Second):
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		<-c.done
	}
	_ = c.log.Close()
}

// schedulerConfig writes roam's KubeSchedulerConfiguration plus a second
// profile, default-scheduler, with the default plugins only: the control
// plane has no stock kube-scheduler, so the stock copies are placed by this
// profile exactly as kube-scheduler would place them. Profiles must share
// one queue-sort plugin, so the default profile inherits the roam profile's
// queue sort (and its args), if it sets one. Leader election is turned off.
func schedulerConfig(src, kubeconfig, dst string) error {
	leaderElect := false
	out, err := schedconfig.Render(src, schedconfig.Overrides{Kubeconfig: kubeconfig, LeaderElect: &leaderElect, Edit: addDefaultProfile})
	if err != nil {
		return err
	}
	if err := os.WriteFile(dst, out, 0o600); err != nil {
		return fmt.Errorf("writing scheduler config: %w", err)
	}
	return nil
}

// addDefaultProfile appends the default-scheduler profile, sharing the
// first profile's queue sort and its args.
func addDefaultProfile(doc map[string]any) error {
	profiles, _ := doc["profiles"].([]any)
	if len(profiles) == 0 {
		return fmt.Errorf("no profiles")
	}
	stock := map[string]any{"schedulerName": "default-scheduler"}
	for _, p := range profiles {
		pm, _ := p.(map[string]any)
		if pm["schedulerName"] == "default-scheduler" {
			return fmt.Errorf("already has a default-scheduler profile")
		}
	}
	first, _ := profiles[0].(map[string]any)
	if plugins, ok := first["plugins"].(map[string]any); ok {
		if qs, ok := plugins["queueSort"].(map[string]any); ok {
			stock["plugins"] = map[string]any{"queueSort": qs}
			var names []string
			if enabled, ok := qs["enabled"].([]any); ok {
				for _, e := range enabled {
					if em, ok := e.(map[string]any); ok {
						if n, ok := em["name"].(string); ok {
							names = append(names, n)
						}
					}
				}
			}
			if pcs, ok := first["pluginConfig"].([]any); ok {
				var keep []any
				for _, pc := range pcs {
					pcm, _ := pc.(map[string]any)
					for _, n := range names {
						if pcm["name"] == n {
							keep = append(keep, pc)
						}
					}
				}
				if len(keep) > 0 {
					stock["pluginConfig"] = keep
				}
			}
		}
	}
	doc["profiles"] = append(profiles, stock)
	return nil
}

// waitReady polls url until it answers 200 or ctx ends or c exits.
func waitReady(ctx context.Context, c *child, url string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	client := &http.Client{Timeout: 2 * time.Second}
	for {
		if err := c.exited(); err != nil {
			return err
		}
		resp, err := client.Get(url)
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s not ready at %s: %w", c.name, url, errors.Join(ctx.Err(), err))
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// children starts roam-scheduler and roam-detector against kubeconfig.
func startChildren(ctx context.Context, cfg *Config, kubeconfig, dir string) (sched, det *child, err error) {
	schedCfg := filepath.Join(dir, "scheduler-config.yaml")
	if err := schedulerConfig(cfg.SchedulerConfig, kubeconfig, schedCfg); err != nil {
		return nil, nil, err
	}
	sched, err = startChild("roam-scheduler", filepath.Join(cfg.RoamBinDir, "roam-scheduler"),
		[]string{"--config", schedCfg, "--kubeconfig", kubeconfig, "--secure-port=0", "--v=1"},
		filepath.Join(cfg.OutDir, "roam-scheduler.log"))
	if err != nil {
		return nil, nil, err
	}
	port, err := controlplane.FreePort()
	if err != nil {
		sched.stop()
		return nil, nil, err
	}
	args := []string{"--kubeconfig", kubeconfig, "--leader-elect=false", "--metrics-addr", "127.0.0.1:" + strconv.Itoa(port)}
	args = append(args, cfg.DetectorArgs...)
	det, err = startChild("roam-detector", filepath.Join(cfg.RoamBinDir, "roam-detector"), args,
		filepath.Join(cfg.OutDir, "roam-detector.log"))
	if err != nil {
		sched.stop()
		return nil, nil, err
	}
	if err := waitReady(ctx, det, fmt.Sprintf("http://127.0.0.1:%d/readyz", port), 60*time.Second); err != nil {
		sched.stop()
		det.stop()
		return nil, nil, err
	}
	return sched, det, nil
}
