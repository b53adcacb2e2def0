// Package deviceplugin exposes a robot's devices to the kubelet through its
// device-plugin API (v1beta1): one plugin, one unix socket and one extended
// resource per configured device class. Glob classes offer each matching
// device node as one unit; a device that disappears turns Unhealthy, so
// the Node's allocatable drops. Virtual classes offer a host path to up to
// N pods at once.
package deviceplugin

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"

	"google.golang.org/grpc"
	pluginapi "k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1"

	"github.com/roam-dev/roam/agent/config"
)

// plugin serves one device class.
type plugin struct {
	pluginapi.UnimplementedDevicePluginServer

	class  config.DeviceClass
	socket string // absolute path of the plugin's socket

	mu      sync.Mutex
	devices map[string]string // device ID → host path
	health  map[string]string // device ID → pluginapi.Healthy / Unhealthy
	watch   map[chan struct{}]struct{}
	server  *grpc.Server
}

func newPlugin(class config.DeviceClass, pluginDir string) *plugin {
	return &plugin{
		class:   class,
		socket:  filepath.Join(pluginDir, "roam-"+class.Name+".sock"),
		devices: map[string]string{},
		health:  map[string]string{},
		watch:   map[chan struct{}]struct{}{},
	}
}

// scan refreshes the devices' health and reports whether anything changed.
// A device seen once stays listed (Unhealthy while it is gone).
func (p *plugin) scan() (changed bool, err error) {
	// present maps the IDs of the devices there now to their paths.
	present := map[string]string{}
	if v := p.class.Virtual; v != nil {
		_, statErr := os.Stat(v.HostPath)
		p.mu.Lock()
		for i := range v.Shares {
			id := p.class.Name + "-" + strconv.Itoa(i)
			if _, known := p.devices[id]; !known {
				p.devices[id] = v.HostPath
				changed = true
			}
			if statErr == nil {
				present[id] = v.HostPath
			}
		}
		p.mu.Unlock()
	} else {
		matches, globErr := filepath.Glob(p.class.Devices)
		if globErr != nil {
			return false, fmt.Errorf("device class %s: %w", p.class.Name, globErr)
		}
		for _, m := range matches {
			if fi, err := os.Stat(m); err == nil && !fi.IsDir() {
				present[m] = m
			}
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for id, path := range present {
		if _, ok := p.devices[id]; !ok {
			p.devices[id] = path
			changed = true
		}
	}
	for id := range p.devices {
		h := pluginapi.Unhealthy
		if _, ok := present[id]; ok {
			h = pluginapi.Healthy
		}
		if p.health[id] != h {
			p.health[id] = h
			changed = true
		}
	}
	if changed {
		for ch := range p.watch {
			select {
			case ch <- struct{}{}:
			default:
			}
		}
	}
	return changed, nil
}

// counts returns the number of healthy and unhealthy devices.
func (p *plugin) counts() (healthy, unhealthy int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, h := range p.health {
		if h == pluginapi.Healthy {
			healthy++
		} else {
			unhealthy++
		}
	}
	return healthy, unhealthy
}

func (p *plugin) list() []*pluginapi.Device {
	p.mu.Lock()
	defer p.mu.Unlock()
	ids := make([]string, 0, len(p.devices))
	for id := range p.devices {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	out := make([]*pluginapi.Device, 0, len(ids))
	for _, id := range ids {
		out = append(out, &pluginapi.Device{ID: id, Health: p.health[id]})
	}
	return out
}

// GetDevicePluginOptions implements pluginapi.DevicePluginServer.
func (p *plugin) GetDevicePluginOptions(context.Context, *pluginapi.Empty) (*pluginapi.DevicePluginOptions, error) {
	return &pluginapi.DevicePluginOptions{}, nil
}

// ListAndWatch sends the device list now and on every change.
func (p *plugin) ListAndWatch(_ *pluginapi.Empty, stream pluginapi.DevicePlugin_ListAndWatchServer) error {
	ch := make(chan struct{}, 1)
	p.mu.Lock()
	p.watch[ch] = struct{}{}
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		delete(p.watch, ch)
		p.mu.Unlock()
	}()
	for {
		if err := stream.Send(&pluginapi.ListAndWatchResponse{Devices: p.list()}); err != nil {
			return fmt.Errorf("device class %s: sending the device list: %w", p.class.Name, err)
		}
		select {
		case <-stream.Context().Done():
			return nil
		case <-ch:
		}
	}
}

// Allocate returns, per container, the device nodes (glob classes) or the
// mount (virtual classes) and the ROAM_DEVICE_<CLASS> variable: the
// comma-separated device paths, or the virtual device's container path.
func (p *plugin) Allocate(_ context.Context, req *pluginapi.AllocateRequest) (*pluginapi.AllocateResponse, error) {
	resp := &pluginapi.AllocateResponse{}
	for _, creq := range req.ContainerRequests {
		cresp := &pluginapi.ContainerAllocateResponse{Envs: map[string]string{}}
		var paths []string
		for _, id := range creq.DevicesIds {
			p.mu.Lock()
			path, ok := p.devices[id]
			health := p.health[id]
			p.mu.Unlock()
			if !ok {
				return nil, fmt.Errorf("device class %s: unknown device %q", p.class.Name, id)
			}
			if health != pluginapi.Healthy {
				return nil, fmt.Errorf("device class %s: device %q is unhealthy (%s is gone)", p.class.Name, id, path)
			}
			if p.class.Virtual == nil {
				host := path
				if resolved, err := filepath.EvalSymlinks(path); err == nil {
					host = resolved // /dev/serial/by-id/… links to the node
				}
				cresp.Devices = append(cresp.Devices, &pluginapi.DeviceSpec{ContainerPath: path, HostPath: host, Permissions: "rw"})
				paths = append(paths, path)
			}
		}
		if v := p.class.Virtual; v != nil && len(creq.DevicesIds) > 0 {
			cresp.Mounts = []*pluginapi.Mount{{ContainerPath: v.ContainerPath, HostPath: v.HostPath, ReadOnly: v.ReadOnly}}
			paths = []string{v.ContainerPath}
		}
		slices.Sort(paths)
		cresp.Envs[p.class.EnvName()] = strings.Join(paths, ",")
		resp.ContainerResponses = append(resp.ContainerResponses, cresp)
	}
	return resp, nil
}

// PreStartContainer is not needed (the options do not ask for it).
func (p *plugin) PreStartContainer(context.Context, *pluginapi.PreStartContainerRequest) (*pluginapi.PreStartContainerResponse, error) {
	return &pluginapi.PreStartContainerResponse{}, nil
}
