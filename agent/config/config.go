// Package config is roam-agent's configuration file (mounted from a
// ConfigMap): the device classes its kubelet device plugin serves.
//
//	deviceClasses:
//	  - name: camera                 # DNS label; env ROAM_DEVICE_CAMERA
//	    resource: roam.dev/camera    # extended resource name
//	    devices: /dev/video*         # glob of device nodes, one unit each
//	  - name: ros-bus
//	    resource: roam.dev/ros-bus
//	    virtual:                     # a host path shared by up to `shares` pods
//	      hostPath: /run/ros/bus.sock
//	      containerPath: /run/ros/bus.sock   # default: hostPath
//	      shares: 4
//	      readOnly: false
//
// A class with an error is reported (naming the class and the field) and
// left out; the other classes keep serving.
package config

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/yaml"
)

// Config is the agent's configuration file.
type Config struct {
	DeviceClasses []DeviceClass `json:"deviceClasses"`
}

// DeviceClass is one kind of device exposed as an extended resource.
type DeviceClass struct {
	// Name identifies the class (a DNS label) and names its environment
	// variable ROAM_DEVICE_<NAME> (upper case, '-' → '_').
	Name string `json:"name"`
	// Resource is the extended resource name, e.g. roam.dev/camera.
	Resource string `json:"resource"`
	// Devices is a glob of device paths; each match is one unit.
	Devices string `json:"devices,omitempty"`
	// Virtual is a host path shared by up to Shares pods.
	Virtual *Virtual `json:"virtual,omitempty"`
}

// Virtual is a virtual device: access to a host path (a socket, a bus, a
// vendor daemon's directory) for up to Shares pods at once.
type Virtual struct {
	HostPath      string `json:"hostPath"`
	ContainerPath string `json:"containerPath,omitempty"`
	Shares        int    `json:"shares"`
	ReadOnly      bool   `json:"readOnly,omitempty"`
}

// EnvName is the environment variable the class sets in a container.
func (c DeviceClass) EnvName() string {
	return "ROAM_DEVICE_" + strings.ToUpper(strings.ReplaceAll(c.Name, "-", "_"))
}

// ClassError is an error in one device class.
type ClassError struct {
	// Index is the class's position in the list; Class its name (may be
	// empty when the name itself is missing).
	Index int
	Class string
	// Field is the field at fault, e.g. "resource".
	Field  string
	Reason string
}

func (e *ClassError) Error() string {
	name := e.Class
	if name == "" {
		name = fmt.Sprintf("#%d", e.Index)
	}
	return fmt.Sprintf("device class %s: field %s: %s", name, e.Field, e.Reason)
}

// MaxShares bounds a virtual device's shares (each is a device ID the
// kubelet tracks).
const MaxShares = 1000

// Load reads a configuration file. A missing file is an empty
// configuration. The returned errors are per-class (*ClassError): those
// classes are left out of the returned Config. A file that cannot be read
// or parsed at all is the returned error.
func Load(path string) (Config, []error, error) {
	data, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return Config{}, nil, nil
	}
	if err != nil {
		return Config{}, nil, fmt.Errorf("reading agent config: %w", err)
	}
	return Parse(data)
}

// Parse is Load for the file's contents.
func Parse(data []byte) (Config, []error, error) {
	var raw struct {
		DeviceClasses []map[string]any `json:"deviceClasses"`
	}
	if err := yaml.UnmarshalStrict(data, &raw); err != nil {
		return Config{}, nil, fmt.Errorf("agent config: %w", err)
	}
	var cfg Config
	var errs []error
	seenName, seenRes := map[string]bool{}, map[string]bool{}
	for i, m := range raw.DeviceClasses {
		name, _ := m["name"].(string)
		c, err := parseClass(i, name, m)
		if err == nil && seenName[c.Name] {
			err = &ClassError{Index: i, Class: name, Field: "name", Reason: "another class has this name"}
		}
		if err == nil && seenRes[c.Resource] {
			err = &ClassError{Index: i, Class: name, Field: "resource", Reason: fmt.Sprintf("another class serves %s", c.Resource)}
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		seenName[c.Name], seenRes[c.Resource] = true, true
		cfg.DeviceClasses = append(cfg.DeviceClasses, c)
	}
	return cfg, errs, nil
}

func parseClass(i int, name string, m map[string]any) (DeviceClass, error) {
	bad := func(field, format string, args ...any) (DeviceClass, error) {
		return DeviceClass{}, &ClassError{Index: i, Class: name, Field: field, Reason: fmt.Sprintf(format, args...)}
	}
	b, err := yaml.Marshal(m)
	if err != nil {
		return bad("", "%v", err)
	}
	var c DeviceClass
	if err := yaml.UnmarshalStrict(b, &c); err != nil {
		msg := err.Error()
		if i := strings.Index(msg, "unknown field "); i >= 0 {
			field := strings.Trim(msg[i+len("unknown field "):], `"`)
			return bad(field, "unknown field")
		}
		return bad("", "%s", msg)
	}
	if c.Name == "" {
		return bad("name", "missing")
	}
	if errs := validation.IsDNS1123Label(c.Name); len(errs) > 0 {
		return bad("name", "%q is not a DNS label: %s", c.Name, strings.Join(errs, "; "))
	}
	if c.Resource == "" {
		return bad("resource", "missing")
	}
	if errs := validation.IsQualifiedName(c.Resource); len(errs) > 0 || !strings.Contains(c.Resource, "/") {
		return bad("resource", "%q is not an extended resource name (domain/name, e.g. roam.dev/camera)", c.Resource)
	}
	if domain, _, _ := strings.Cut(c.Resource, "/"); domain == "kubernetes.io" || strings.HasSuffix(domain, ".kubernetes.io") {
		return bad("resource", "%q: the kubernetes.io domain is reserved", c.Resource)
	}
	switch {
	case c.Devices != "" && c.Virtual != nil:
		return bad("devices", "a class has either devices or virtual, not both")
	case c.Devices != "":
		if !filepath.IsAbs(c.Devices) {
			return bad("devices", "%q is not an absolute path", c.Devices)
		}
		if _, err := filepath.Match(c.Devices, ""); err != nil {
			return bad("devices", "%q is not a valid glob: %v", c.Devices, err)
		}
	case c.Virtual != nil:
		v := c.Virtual
		if v.HostPath == "" || !filepath.IsAbs(v.HostPath) {
			return bad("virtual.hostPath", "must be an absolute path, got %q", v.HostPath)
		}
		if v.ContainerPath == "" {
			v.ContainerPath = v.HostPath
		}
		if !filepath.IsAbs(v.ContainerPath) {
			return bad("virtual.containerPath", "must be an absolute path, got %q", v.ContainerPath)
		}
		if v.Shares < 1 || v.Shares > MaxShares {
			return bad("virtual.shares", "must be 1..%d, got %d", MaxShares, v.Shares)
		}
	default:
		return bad("devices", "a class needs devices (a glob) or virtual (a shared host path)")
	}
	return c, nil
}

// Example is a configuration file showing every field.
var Example = bytes.TrimSpace([]byte(`
deviceClasses:
  - name: camera
    resource: roam.dev/camera
    devices: /dev/video*
  - name: lidar
    resource: roam.dev/lidar
    devices: /dev/serial/by-id/*lidar*
  - name: ros-bus
    resource: roam.dev/ros-bus
    virtual:
      hostPath: /run/ros/bus.sock
      shares: 4
`))
