package deviceplugin

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/fsnotify/fsnotify"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"k8s.io/klog/v2"
	pluginapi "k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1"
	"k8s.io/utils/clock"

	"github.com/roam-dev/roam/agent/config"
)

// Options configure a Manager.
type Options struct {
	// PluginDir is the kubelet's device-plugin directory, holding its
	// registration socket kubelet.sock (default
	// /var/lib/kubelet/device-plugins).
	PluginDir string
	// Rescan is how often every class is rescanned and unregistered
	// plugins retry, besides rescanning on file-system events (default 10 s).
	Rescan time.Duration
	// Clock defaults to the real clock.
	Clock clock.WithTicker
	// OnHealth, when set, is called with a class's device counts after
	// each change.
	OnHealth func(class string, healthy, unhealthy int)
}

// Manager runs one device plugin per device class. It registers each with
// the kubelet, registers again whenever the kubelet's socket is created
// anew (the kubelet restarted and removed every plugin socket), and
// rescans the devices whenever their directories change.
type Manager struct {
	opts    Options
	plugins []*plugin
}

// New returns a manager for classes.
func New(classes []config.DeviceClass, opts Options) *Manager {
	if opts.PluginDir == "" {
		opts.PluginDir = pluginapi.DevicePluginPath
	}
	if opts.Rescan == 0 {
		opts.Rescan = 10 * time.Second
	}
	if opts.Clock == nil {
		opts.Clock = clock.RealClock{}
	}
	m := &Manager{opts: opts}
	for _, c := range classes {
		m.plugins = append(m.plugins, newPlugin(c, opts.PluginDir))
	}
	return m
}

// Run serves until ctx is done.
func (m *Manager) Run(ctx context.Context) error {
	logger := klog.FromContext(ctx)
	if len(m.plugins) == 0 {
		logger.Info("No device classes configured; the device plugin is idle")
		<-ctx.Done()
		return nil
	}
	if err := os.MkdirAll(m.opts.PluginDir, 0o750); err != nil {
		return fmt.Errorf("device plugin directory: %w", err)
	}
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("device plugin: %w", err)
	}
	defer func() { _ = w.Close() }()
	if err := w.Add(m.opts.PluginDir); err != nil {
		return fmt.Errorf("watching %s: %w", m.opts.PluginDir, err)
	}
	watched := map[string]bool{}
	watchDevices := func() {
		for _, p := range m.plugins {
			dir := staticDir(p)
			if dir == "" || watched[dir] {
				continue
			}
			if err := w.Add(dir); err == nil {
				watched[dir] = true
			}
		}
	}
	watchDevices()

	registered := make([]bool, len(m.plugins))
	rescan := func() {
		for _, p := range m.plugins {
			changed, err := p.scan()
			if err != nil {
				logger.Error(err, "Scanning devices", "class", p.class.Name)
				continue
			}
			if changed {
				h, u := p.counts()
				logger.Info("Devices changed", "class", p.class.Name, "resource", p.class.Resource, "healthy", h, "unhealthy", u)
				if m.opts.OnHealth != nil {
					m.opts.OnHealth(p.class.Name, h, u)
				}
			}
		}
	}
	restart := func() {
		// (Re)start every plugin's server and register it. A failure
		// leaves that class unregistered until the next try; the others
		// keep serving.
		for i, p := range m.plugins {
			p.stop()
			if err := p.start(); err != nil {
				logger.Error(err, "Starting device plugin", "class", p.class.Name)
				registered[i] = false
				continue
			}
			registered[i] = m.register(ctx, p) == nil
		}
	}
	retry := func() {
		for i, p := range m.plugins {
			if registered[i] {
				continue
			}
			p.stop()
			if err := p.start(); err != nil {
				logger.Error(err, "Starting device plugin", "class", p.class.Name)
				continue
			}
			registered[i] = m.register(ctx, p) == nil
		}
	}
	rescan()
	restart()
	defer func() {
		for _, p := range m.plugins {
			p.stop()
		}
	}()

	kubeletSock := filepath.Join(m.opts.PluginDir, filepath.Base(pluginapi.KubeletSocket))
	tick := m.opts.Clock.NewTicker(m.opts.Rescan)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-w.Events:
			if !ok {
				return errors.New("device plugin watcher closed")
			}
			switch {
			case ev.Name == kubeletSock && ev.Has(fsnotify.Create):
				logger.Info("The kubelet's device-plugin socket was created; registering again")
				restart()
			case filepath.Dir(ev.Name) == m.opts.PluginDir:
				if ev.Has(fsnotify.Remove) {
					for i, p := range m.plugins {
						if ev.Name == p.socket {
							registered[i] = false
						}
					}
				}
			default:
				rescan()
			}
		case err, ok := <-w.Errors:
			if !ok {
				return errors.New("device plugin watcher closed")
			}
			logger.Error(err, "Watching devices")
		case <-tick.C():
			watchDevices()
			rescan()
			retry()
		}
	}
}

// staticDir is the directory part of a glob class's pattern before its
// first wildcard, or the parent of a virtual device's host path.
func staticDir(p *plugin) string {
	if v := p.class.Virtual; v != nil {
		return filepath.Dir(v.HostPath)
	}
	pat := p.class.Devices
	if i := strings.IndexAny(pat, "*?["); i >= 0 {
		pat = pat[:i]
	}
	return filepath.Dir(pat + "x")
}

func (p *plugin) start() error {
	_ = os.Remove(p.socket)
	l, err := net.Listen("unix", p.socket)
	if err != nil {
		return fmt.Errorf("device class %s: listening on %s: %w", p.class.Name, p.socket, err)
	}
	srv := grpc.NewServer()
	pluginapi.RegisterDevicePluginServer(srv, p)
	p.mu.Lock()
	p.server = srv
	p.mu.Unlock()
	go func() { _ = srv.Serve(l) }()
	return nil
}

func (p *plugin) stop() {
	p.mu.Lock()
	srv := p.server
	p.server = nil
	p.mu.Unlock()
	if srv != nil {
		srv.Stop()
	}
}

func (m *Manager) register(ctx context.Context, p *plugin) error {
	kubeletSock := filepath.Join(m.opts.PluginDir, filepath.Base(pluginapi.KubeletSocket))
	conn, err := grpc.NewClient("unix://"+kubeletSock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return fmt.Errorf("device class %s: connecting to the kubelet: %w", p.class.Name, err)
	}
	defer func() { _ = conn.Close() }()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	_, err = pluginapi.NewRegistrationClient(conn).Register(ctx, &pluginapi.RegisterRequest{
		Version:      pluginapi.Version,
		Endpoint:     filepath.Base(p.socket),
		ResourceName: p.class.Resource,
		Options:      &pluginapi.DevicePluginOptions{},
	})
	if err != nil {
		klog.FromContext(ctx).Error(err, "Registering with the kubelet", "class", p.class.Name, "resource", p.class.Resource)
		return fmt.Errorf("device class %s: registering with the kubelet: %w", p.class.Name, err)
	}
	klog.FromContext(ctx).Info("Registered with the kubelet", "class", p.class.Name, "resource", p.class.Resource, "socket", p.socket)
	return nil
}
