package cli_test

import (
	"context"
	"database/sql"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cachekeeper/cachekeeper/config"
	"github.com/cachekeeper/cachekeeper/internal/cli"
	"github.com/cachekeeper/cachekeeper/internal/testenv"
	"github.com/cachekeeper/cachekeeper/worker"
)

// Typed views of the Kubernetes objects deploy/kubernetes uses: a field the
// manifest sets and these do not declare fails the strict decode.
type k8sMeta struct {
	Name        string            `yaml:"name"`
	Labels      map[string]string `yaml:"labels"`
	Annotations map[string]string `yaml:"annotations"`
}

type k8sSelector struct {
	MatchLabels map[string]string `yaml:"matchLabels"`
}

type k8sProbe struct {
	HTTPGet *struct {
		Path string `yaml:"path"`
		Port string `yaml:"port"`
	} `yaml:"httpGet"`
	PeriodSeconds    int `yaml:"periodSeconds"`
	FailureThreshold int `yaml:"failureThreshold"`
}

type k8sContainer struct {
	Name    string   `yaml:"name"`
	Image   string   `yaml:"image"`
	Command []string `yaml:"command"`
	Args    []string `yaml:"args"`
	Env     []struct {
		Name      string `yaml:"name"`
		Value     string `yaml:"value"`
		ValueFrom *struct {
			SecretKeyRef *struct {
				Name string `yaml:"name"`
				Key  string `yaml:"key"`
			} `yaml:"secretKeyRef"`
		} `yaml:"valueFrom"`
	} `yaml:"env"`
	Ports []struct {
		Name          string `yaml:"name"`
		ContainerPort int    `yaml:"containerPort"`
	} `yaml:"ports"`
	LivenessProbe  *k8sProbe `yaml:"livenessProbe"`
	ReadinessProbe *k8sProbe `yaml:"readinessProbe"`
	Resources      struct {
		Requests map[string]string `yaml:"requests"`
		Limits   map[string]string `yaml:"limits"`
	} `yaml:"resources"`
	VolumeMounts []struct {
		Name      string `yaml:"name"`
		MountPath string `yaml:"mountPath"`
	} `yaml:"volumeMounts"`
}

type k8sObject struct {
	APIVersion string            `yaml:"apiVersion"`
	Kind       string            `yaml:"kind"`
	Metadata   k8sMeta           `yaml:"metadata"`
	Type       string            `yaml:"type"`       // Secret
	StringData map[string]string `yaml:"stringData"` // Secret
	Data       map[string]string `yaml:"data"`       // ConfigMap
	Spec       *struct {
		// Deployment
		Replicas int          `yaml:"replicas"`
		Selector *k8sSelector `yaml:"selector"`
		Template *struct {
			Metadata k8sMeta `yaml:"metadata"`
			Spec     struct {
				TerminationGracePeriodSeconds *int           `yaml:"terminationGracePeriodSeconds"`
				Containers                    []k8sContainer `yaml:"containers"`
				Volumes                       []struct {
					Name      string `yaml:"name"`
					ConfigMap *struct {
						Name string `yaml:"name"`
					} `yaml:"configMap"`
				} `yaml:"volumes"`
			} `yaml:"spec"`
		} `yaml:"template"`
		// PodDisruptionBudget
		MinAvailable *int `yaml:"minAvailable"`
	} `yaml:"spec"`
}

// k8sService needs its own type: a Service's selector is a label map, a
// Deployment's and a PodDisruptionBudget's a matchLabels object.
type k8sService struct {
	APIVersion string  `yaml:"apiVersion"`
	Kind       string  `yaml:"kind"`
	Metadata   k8sMeta `yaml:"metadata"`
	Spec       struct {
		Selector map[string]string `yaml:"selector"`
		Ports    []struct {
			Name       string `yaml:"name"`
			Port       int    `yaml:"port"`
			TargetPort string `yaml:"targetPort"`
		} `yaml:"ports"`
	} `yaml:"spec"`
}

type composeService struct {
	Image string `yaml:"image"`
	Build *struct {
		Context    string            `yaml:"context"`
		Dockerfile string            `yaml:"dockerfile"`
		Args       map[string]string `yaml:"args"`
	} `yaml:"build"`
	Command     []string          `yaml:"command"`
	Environment map[string]string `yaml:"environment"`
	Configs     []struct {
		Source string `yaml:"source"`
		Target string `yaml:"target"`
	} `yaml:"configs"`
	DependsOn map[string]struct {
		Condition string `yaml:"condition"`
	} `yaml:"depends_on"`
	StopGracePeriod string   `yaml:"stop_grace_period"`
	Restart         string   `yaml:"restart"`
	Ports           []string `yaml:"ports"`
	Volumes         []string `yaml:"volumes"`
	Healthcheck     *struct {
		Test     []string `yaml:"test"`
		Interval string   `yaml:"interval"`
		Timeout  string   `yaml:"timeout"`
		Retries  int      `yaml:"retries"`
	} `yaml:"healthcheck"`
}

type composeFile struct {
	Name     string                    `yaml:"name"`
	Common   composeService            `yaml:"x-cachekeeper"`
	Services map[string]composeService `yaml:"services"`
	Configs  map[string]struct {
		Content string `yaml:"content"`
	} `yaml:"configs"`
	Volumes map[string]struct{} `yaml:"volumes"`
}

// A process a manifest runs, to start for real and probe.
type deployProc struct {
	where   string
	args    []string // after the program name
	cfgBody string
	env     map[string]string
	port    int      // the container port its HTTP server must listen on
	paths   []string // probe and healthcheck paths
	ui      bool
}

// binary is where the Docker image puts cachekeeper (its ENTRYPOINT).
const binary = "/usr/local/bin/cachekeeper"

// checkProcArgs checks a command line and returns the command, its flags and
// the port its HTTP server listens on.
func checkProcArgs(t *testing.T, where string, args []string, cfg config.Config) (string, map[string]string, int) {
	t.Helper()
	cmd, flags, err := checkCommandLine(args)
	if err != nil {
		t.Errorf("%s: %v", where, err)
		return "", nil, 0
	}
	addr := flags["metrics-addr"]
	if addr == "" && cmd == "worker" {
		addr = cfg.Worker.MetricsAddr
	}
	if addr == "" {
		t.Errorf("%s: %s serves no HTTP endpoints (no --metrics-addr), so nothing can probe it", where, cmd)
		return cmd, flags, 0
	}
	return cmd, flags, portOf(t, addr)
}

func checkGrace(t *testing.T, where string, grace time.Duration, cfg config.Config) {
	t.Helper()
	if need := cfg.Worker.ShutdownTimeout + worker.ShutdownGrace; grace <= need {
		t.Errorf("%s: grace period %s is not above worker.shutdown_timeout %s plus %s: running jobs would be killed",
			where, grace, cfg.Worker.ShutdownTimeout, worker.ShutdownGrace)
	}
}

func checkKubernetes(t *testing.T) []deployProc {
	var objs []*k8sObject
	var services []*k8sService
	decodeStrict(t, "kubernetes/cachekeeper.yaml", readDeploy(t, "kubernetes/cachekeeper.yaml"), func(kind string) any {
		if kind == "Service" {
			s := &k8sService{}
			services = append(services, s)
			return s
		}
		o := &k8sObject{}
		objs = append(objs, o)
		return o
	})
	byKind := map[string][]*k8sObject{}
	for _, o := range objs {
		byKind[o.Kind] = append(byKind[o.Kind], o)
	}
	for _, kind := range []string{"Secret", "ConfigMap", "Deployment", "PodDisruptionBudget"} {
		if len(byKind[kind]) == 0 {
			t.Errorf("kubernetes: no %s", kind)
		}
	}
	if len(services) == 0 {
		t.Errorf("kubernetes: no Service")
	}
	if t.Failed() {
		t.FailNow()
	}
	secrets := map[string]map[string]string{}
	for _, s := range byKind["Secret"] {
		secrets[s.Metadata.Name] = s.StringData
	}
	configMaps := map[string]map[string]string{}
	for _, c := range byKind["ConfigMap"] {
		configMaps[c.Metadata.Name] = c.Data
	}
	known := knownEnv()
	var procs []deployProc
	podLabels := map[string]map[string]string{} // deployment -> labels
	portNames := map[string]map[string]int{}    // deployment -> port name -> port
	replicas := map[string]int{}
	for _, d := range byKind["Deployment"] {
		where := "kubernetes Deployment " + d.Metadata.Name
		tpl := d.Spec.Template
		podLabels[d.Metadata.Name] = tpl.Metadata.Labels
		replicas[d.Metadata.Name] = d.Spec.Replicas
		for k, v := range d.Spec.Selector.MatchLabels {
			if tpl.Metadata.Labels[k] != v {
				t.Errorf("%s: selector %s=%s does not match its pods' labels %v", where, k, v, tpl.Metadata.Labels)
			}
		}
		volumes := map[string]string{}
		for _, v := range tpl.Spec.Volumes {
			if v.ConfigMap != nil {
				if configMaps[v.ConfigMap.Name] == nil {
					t.Errorf("%s: volume %s names ConfigMap %s, which the manifest does not define", where, v.Name, v.ConfigMap.Name)
				}
				volumes[v.Name] = v.ConfigMap.Name
			}
		}
		for _, c := range tpl.Spec.Containers {
			where := where + " container " + c.Name
			if i := strings.LastIndex(c.Image, ":"); i < 0 || c.Image[i+1:] == "latest" || strings.Contains(c.Image[i:], "/") {
				t.Errorf("%s: image %q has no pinned tag", where, c.Image)
			}
			if len(c.Command) > 0 {
				t.Errorf("%s: command %v overrides the image's entrypoint %s; use args", where, c.Command, binary)
			}
			env := map[string]string{}
			for _, e := range c.Env {
				if !known[e.Name] {
					t.Errorf("%s: env %s is not read by cachekeeper (it reads %v)", where, e.Name, config.EnvVars)
				}
				env[e.Name] = e.Value
				if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
					ref := e.ValueFrom.SecretKeyRef
					v, ok := secrets[ref.Name][ref.Key]
					if !ok {
						t.Errorf("%s: env %s refers to secret %s key %s, which the manifest does not define", where, e.Name, ref.Name, ref.Key)
					}
					env[e.Name] = v
				}
			}
			for _, want := range []string{config.EnvRedisURL, config.EnvDatabaseURL} {
				if _, ok := env[want]; !ok {
					t.Errorf("%s: no %s from the Secret", where, want)
				}
			}
			// The config file the args name is the ConfigMap's key under its mount.
			_, flags, err := checkCommandLine(c.Args)
			if err != nil {
				t.Errorf("%s: %v", where, err)
				continue
			}
			var body string
			for _, m := range c.VolumeMounts {
				if cm, ok := volumes[m.Name]; ok && strings.HasPrefix(flags["config"], m.MountPath+"/") {
					var ok bool
					if body, ok = configMaps[cm][strings.TrimPrefix(flags["config"], m.MountPath+"/")]; !ok {
						t.Errorf("%s: --config %s is not a key of ConfigMap %s", where, flags["config"], cm)
					}
				}
			}
			if body == "" {
				t.Errorf("%s: --config %q is not in a mounted ConfigMap", where, flags["config"])
				continue
			}
			cfg, err := checkConfig(body, env)
			if err != nil {
				t.Errorf("%s: the ConfigMap's config fails `config check`: %v", where, err)
				continue
			}
			if len(cfg.Schedule) == 0 {
				t.Errorf("%s: the config has no schedule: the schedulers would idle", where)
			}
			cmd, _, port := checkProcArgs(t, where, c.Args, cfg)
			if g := tpl.Spec.TerminationGracePeriodSeconds; g == nil {
				t.Errorf("%s: no terminationGracePeriodSeconds (Kubernetes' 30s default is not above the shutdown)", where)
			} else {
				checkGrace(t, where, time.Duration(*g)*time.Second, cfg)
			}
			names := map[string]int{}
			for _, p := range c.Ports {
				names[p.Name] = p.ContainerPort
				if p.ContainerPort != port {
					t.Errorf("%s: containerPort %d, but %s listens on %d", where, p.ContainerPort, cmd, port)
				}
			}
			portNames[d.Metadata.Name] = names
			if a, ok := tpl.Metadata.Annotations["prometheus.io/port"]; ok && a != fmt.Sprint(port) {
				t.Errorf("%s: prometheus.io/port %q, but %s listens on %d", where, a, cmd, port)
			}
			var paths []string
			for name, p := range map[string]*k8sProbe{"livenessProbe": c.LivenessProbe, "readinessProbe": c.ReadinessProbe} {
				if p == nil || p.HTTPGet == nil {
					t.Errorf("%s: no %s", where, name)
					continue
				}
				if _, ok := names[p.HTTPGet.Port]; !ok && p.HTTPGet.Port != fmt.Sprint(port) {
					t.Errorf("%s: %s port %q is neither a named container port nor %d", where, name, p.HTTPGet.Port, port)
				}
				paths = append(paths, p.HTTPGet.Path)
			}
			procs = append(procs, deployProc{where: where, args: c.Args, cfgBody: body, env: env, port: port, paths: paths})
		}
	}
	for _, s := range services {
		where := "kubernetes Service " + s.Metadata.Name
		matched := ""
		for d, labels := range podLabels {
			match := len(s.Spec.Selector) > 0
			for k, v := range s.Spec.Selector {
				match = match && labels[k] == v
			}
			if match {
				matched = d
			}
		}
		if matched == "" {
			t.Errorf("%s: selector %v matches no Deployment's pods", where, s.Spec.Selector)
			continue
		}
		for _, p := range s.Spec.Ports {
			if _, ok := portNames[matched][p.TargetPort]; !ok {
				t.Errorf("%s: targetPort %q is not a port of %s (%v)", where, p.TargetPort, matched, portNames[matched])
			}
		}
	}
	for _, b := range byKind["PodDisruptionBudget"] {
		where := "kubernetes PodDisruptionBudget " + b.Metadata.Name
		matched := ""
		for d, labels := range podLabels {
			match := len(b.Spec.Selector.MatchLabels) > 0
			for k, v := range b.Spec.Selector.MatchLabels {
				match = match && labels[k] == v
			}
			if match {
				matched = d
			}
		}
		if matched == "" {
			t.Errorf("%s: selector matches no Deployment's pods", where)
		} else if b.Spec.MinAvailable == nil || *b.Spec.MinAvailable >= replicas[matched] {
			t.Errorf("%s: minAvailable must be set and below %s's %d replicas, or no node could be drained", where, matched, replicas[matched])
		}
	}
	return procs
}

func checkCompose(t *testing.T) []deployProc {
	var f composeFile
	decodeStrict(t, "compose.yaml", readDeploy(t, "compose.yaml"), func(string) any { return &f })
	known := knownEnv()
	var procs []deployProc
	counts := map[string]int{}
	for _, need := range []string{"redis", "postgres"} {
		if s, ok := f.Services[need]; !ok || s.Healthcheck == nil || len(s.Healthcheck.Test) < 2 {
			t.Errorf("compose: no %s service with a healthcheck", need)
		}
	}
	for name, s := range f.Services {
		where := "compose service " + name
		if !strings.HasPrefix(s.Image, "cachekeeper:") {
			continue
		}
		for dep, d := range s.DependsOn {
			if _, ok := f.Services[dep]; !ok || d.Condition != "service_healthy" {
				t.Errorf("%s: depends_on %s must be a service with condition service_healthy", where, dep)
			}
		}
		env := map[string]string{}
		for k, v := range s.Environment {
			if !known[k] {
				t.Errorf("%s: env %s is not read by cachekeeper", where, k)
			}
			env[k] = v
		}
		var body string
		_, flags, err := checkCommandLine(s.Command)
		if err != nil {
			t.Errorf("%s: %v", where, err)
			continue
		}
		for _, c := range s.Configs {
			if c.Target == flags["config"] {
				body = f.Configs[c.Source].Content
			}
		}
		if body == "" {
			t.Errorf("%s: --config %q is not a mounted config with content", where, flags["config"])
			continue
		}
		cfg, err := checkConfig(body, nil)
		if err != nil {
			t.Errorf("%s: its config fails `config check`: %v", where, err)
			continue
		}
		cmd, _, port := checkProcArgs(t, where, s.Command, cfg)
		counts[cmd]++
		grace, err := time.ParseDuration(s.StopGracePeriod)
		if err != nil {
			t.Errorf("%s: stop_grace_period %q: %v (docker's 10s default is below the shutdown)", where, s.StopGracePeriod, err)
		} else {
			checkGrace(t, where, grace, cfg)
		}
		for _, p := range s.Ports {
			if parts := strings.Split(p, ":"); parts[len(parts)-1] != fmt.Sprint(port) {
				t.Errorf("%s: port %q, but %s listens on %d", where, p, cmd, port)
			} else if len(parts) != 3 || parts[0] != "127.0.0.1" {
				t.Errorf("%s: port %q is published beyond loopback; use 127.0.0.1:HOST:%d", where, p, port)
			}
		}
		var paths []string
		if hc := s.Healthcheck; hc == nil || len(hc.Test) < 3 || hc.Test[0] != "CMD" || hc.Test[1] != binary {
			t.Errorf("%s: healthcheck must be [CMD, %s, healthcheck, ...] (the image has no shell)", where, binary)
		} else if hcCmd, hcFlags, err := checkCommandLine(hc.Test[2:]); err != nil {
			t.Errorf("%s: healthcheck: %v", where, err)
		} else if hcCmd != "healthcheck" {
			t.Errorf("%s: healthcheck runs %q", where, hcCmd)
		} else {
			u := hcFlags["url"]
			prefix := fmt.Sprintf("http://127.0.0.1:%d/", port)
			if !strings.HasPrefix(u, prefix) {
				t.Errorf("%s: healthcheck --url %q does not start with %s", where, u, prefix)
			} else {
				paths = append(paths, strings.TrimPrefix(u, prefix[:len(prefix)-1]))
			}
		}
		ui := false
		for _, a := range s.Command {
			ui = ui || a == "--ui"
		}
		if ui {
			counts["ui"]++
			if s.Environment["CACHEKEEPER_UI_USER"] == "" || s.Environment["CACHEKEEPER_UI_PASSWORD"] == "" {
				t.Errorf("%s: serves the UI without CACHEKEEPER_UI_USER and CACHEKEEPER_UI_PASSWORD", where)
			}
			// The compose values are ${...} substitutions: run it with a real login.
			env["CACHEKEEPER_UI_USER"], env["CACHEKEEPER_UI_PASSWORD"] = "ops", "correct-horse-battery"
		}
		procs = append(procs, deployProc{where: where, args: s.Command, cfgBody: body, env: env, port: port, paths: paths, ui: ui})
	}
	if counts["worker"] != 2 || counts["scheduler"] != 2 || counts["ui"] != 1 {
		t.Errorf("compose: %d workers, %d schedulers, %d UIs; want 2, 2 and 1", counts["worker"], counts["scheduler"], counts["ui"])
	}
	return procs
}

func checkSystemdAndDocker(t *testing.T) {
	ex, err := checkConfig(string(readDeploy(t, "cachekeeper.example.yaml")), map[string]string{
		config.EnvRedisURL: "redis://127.0.0.1:6379/0", config.EnvDatabaseURL: "postgres://u@127.0.0.1:5432/db"})
	if err != nil {
		t.Fatalf("cachekeeper.example.yaml: %v", err)
	}
	users := string(readDeploy(t, "systemd/cachekeeper.sysusers.conf"))
	for _, unit := range []string{"cachekeeper-worker.service", "cachekeeper-scheduler.service"} {
		where := "systemd " + unit
		var exec []string
		for _, line := range strings.Split(string(readDeploy(t, "systemd/"+unit)), "\n") {
			k, v, _ := strings.Cut(strings.TrimSpace(line), "=")
			switch k {
			case "ExecStart":
				exec = strings.Fields(v)
			case "User":
				if !strings.Contains(users, "u "+v+" ") {
					t.Errorf("%s: User=%s is not created by cachekeeper.sysusers.conf", where, v)
				}
			case "TimeoutStopSec":
				d, err := time.ParseDuration(v + "s")
				if err != nil {
					t.Errorf("%s: TimeoutStopSec=%s: %v", where, v, err)
				}
				checkGrace(t, where, d, ex)
			}
		}
		if len(exec) < 2 || exec[0] != binary {
			t.Errorf("%s: ExecStart %v does not run %s", where, exec, binary)
			continue
		}
		if _, _, err := checkCommandLine(exec[1:]); err != nil {
			t.Errorf("%s: %v", where, err)
		}
	}
	for _, line := range strings.Split(string(readDeploy(t, "docker/Dockerfile")), "\n") {
		k, v, _ := strings.Cut(line, " ")
		switch k {
		case "ENTRYPOINT":
			if v != `["`+binary+`"]` {
				t.Errorf("Dockerfile: ENTRYPOINT %s, want [%q] (the manifests run that path)", v, binary)
			}
		case "CMD":
			args := strings.Split(strings.Trim(v, "[]"), ",")
			for i := range args {
				args[i] = strings.Trim(strings.TrimSpace(args[i]), `"`)
			}
			if _, _, err := checkCommandLine(args); err != nil {
				t.Errorf("Dockerfile CMD: %v", err)
			}
		}
	}
}

// Every deploy manifest parses strictly, runs real commands with real flags
// and env vars, and probes paths the real processes serve on the ports they
// listen on; grace periods exceed the shutdown; embedded configs pass
// `config check`. Then each process the manifests run is started for real
// (its own args, the config file and listen address swapped for the test's)
// and its probe paths are GET.
func TestDeployManifestsMatchTheRealCLIAndServers(t *testing.T) {
	t.Parallel()
	procs := append(checkKubernetes(t), checkCompose(t)...)
	checkSystemdAndDocker(t)
	if t.Failed() {
		t.FailNow()
	}

	r := testenv.NewRedis(t)
	dir := t.TempDir()
	dbPath := filepath.Join(dir, "app.db")
	db, err := sql.Open("sqlite", dbPath)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec("CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT, full_name TEXT)"); err != nil {
		t.Fatal(err)
	}
	_ = db.Close()

	// One Kubernetes worker and scheduler, and the compose worker with the UI.
	started := map[string]bool{}
	var run3 []deployProc
	for _, p := range procs {
		key := strings.Fields(p.where)[0] + " " + p.args[0]
		if p.ui {
			key = "ui"
		}
		if !started[key] && (strings.HasPrefix(key, "kubernetes") || key == "ui") {
			started[key] = true
			run3 = append(run3, p)
		}
	}
	if len(run3) != 3 {
		t.Fatalf("expected a Kubernetes worker and scheduler and a compose UI worker, got %d processes", len(run3))
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan result, len(run3))
	for i, p := range run3 {
		cfgPath := filepath.Join(dir, fmt.Sprintf("ck%d.yaml", i))
		if err := os.WriteFile(cfgPath, []byte(p.cfgBody), 0o600); err != nil {
			t.Fatal(err)
		}
		addr := freeAddr(t)
		args := append([]string(nil), p.args...)
		hasAddr := false
		for j := range args {
			switch args[j] {
			case "--config":
				args[j+1] = cfgPath
			case "--metrics-addr":
				args[j+1], hasAddr = addr, true
			}
		}
		if !hasAddr {
			args = append(args, "--metrics-addr", addr)
		}
		if args[0] == "worker" {
			args = append(args, "--servers", "1")
		}
		args = append(args, "--log-level", "error")
		env := map[string]string{}
		for k, v := range p.env {
			env[k] = v
		}
		env[config.EnvRedisURL], env[config.EnvDatabaseURL] = r.URL, "sqlite://"+dbPath
		go func() { done <- run(t, ctx, env, args...) }()
		for _, path := range p.paths {
			code, err := getStatus("http://"+addr+path, http.StatusOK, "", "")
			if code != http.StatusOK {
				t.Errorf("%s: GET %s on the real %s: %d %v", p.where, path, args[0], code, err)
			}
		}
		hc := run(t, ctx, nil, "healthcheck", "--url", "http://"+addr+"/readyz")
		if hc.code != 0 {
			t.Errorf("%s: cachekeeper healthcheck on the real %s: exit %d %s", p.where, args[0], hc.code, hc.stderr)
		}
		if hc := run(t, ctx, nil, "healthcheck", "--url", "http://"+addr+"/nope"); hc.code != 1 {
			t.Errorf("healthcheck of a 404: exit %d, want 1 (%s)", hc.code, hc.stderr)
		}
		if p.ui {
			if code, _ := getStatus("http://"+addr+"/ui/", http.StatusUnauthorized, "", ""); code != http.StatusUnauthorized {
				t.Errorf("%s: /ui/ without the login: %d, want 401", p.where, code)
			}
			if code, err := getStatus("http://"+addr+"/ui/", http.StatusOK, "ops", "correct-horse-battery"); code != http.StatusOK {
				t.Errorf("%s: /ui/ with the login: %d %v, want 200", p.where, code, err)
			}
		}
		t.Logf("%s: %v serves %v on a real %s", p.where, p.args, p.paths, args[0])
	}
	cancel()
	for range run3 {
		select {
		case res := <-done:
			if res.code != 0 {
				t.Errorf("process exit %d: %s", res.code, res.stderr)
			}
		case <-time.After(20 * time.Second):
			t.Fatal("a process did not stop")
		}
	}
}

// The command-line check refuses what the CLI would refuse.
func TestCheckCommandLineRefusesUnknownFlagsAndCommands(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{"worker", "--config", "x", "--no-such-flag"},
		{"scheduler", "--metrics-adr", ":9091"},
		{"workr"},
		{"worker", "--concurrency", "many"},
		{"healthcheck", "--timeout", "soon"},
		{"worker", "--config"},
	} {
		if _, _, err := checkCommandLine(args); err == nil {
			t.Errorf("%v: accepted", args)
		}
	}
	for _, args := range [][]string{{"healthcheck", "--url", "ftp://x/readyz"}, {"healthcheck", "--url", "http:///readyz"}, {"healthcheck", "--timeout", "0s"}} {
		if res := run(t, context.Background(), nil, args...); res.code != cli.ExitUsage || !strings.Contains(res.stderr, "--") {
			t.Errorf("%v: exit %d %q, want 2 naming the flag", args, res.code, res.stderr)
		}
	}
	if res := run(t, context.Background(), nil, "healthcheck", "--url", "http://"+freeAddr(t)+"/readyz", "--timeout", "2s"); res.code != 1 {
		t.Errorf("healthcheck of a closed port: exit %d %q, want 1", res.code, res.stderr)
	}
	if cmd, flags, err := checkCommandLine([]string{"scheduler", "--config", "/c.yaml", "--metrics-addr=:9091"}); err != nil || cmd != "scheduler" || flags["metrics-addr"] != ":9091" {
		t.Errorf("valid scheduler line: %q %v %v", cmd, flags, err)
	}
}
