package deploytest

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	klabels "k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/yaml"

	"github.com/agentd/agentd/internal/config"
)

const chartDir = repo + "/deploy/helm/agentd"

// helmBin finds helm: $PATH, then $(go env GOPATH)/bin.
func helmBin(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("helm"); err == nil {
		return p
	}
	if out, err := exec.Command("go", "env", "GOPATH").Output(); err == nil {
		p := filepath.Join(strings.TrimSpace(string(out)), "bin", "helm")
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	const msg = "helm not installed: go install helm.sh/helm/v3/cmd/helm@v3.22.0 (or put helm in $PATH) to render the chart"
	if os.Getenv("AGENTD_DEPLOYTEST_REQUIRE_HELM") != "" {
		t.Fatal(msg + " (AGENTD_DEPLOYTEST_REQUIRE_HELM is set: CI runs every chart test)")
	}
	t.Skip(msg)
	return ""
}

// manifests is one rendering of the chart, decoded.
type manifests struct {
	deployments []appsv1.Deployment
	services    []corev1.Service
	configMaps  []corev1.ConfigMap
	pdbs        []policyv1.PodDisruptionBudget
	hpas        []autoscalingv2.HorizontalPodAutoscaler
	netpols     []networkingv1.NetworkPolicy
	ingresses   []networkingv1.Ingress
	jobs        []batchv1.Job
	cronJobs    []batchv1.CronJob
	sas         []corev1.ServiceAccount
	pvcs        []corev1.PersistentVolumeClaim
	custom      []map[string]any // CRDs: ServiceMonitor, PrometheusRule, ExternalSecret
	names       map[string]bool  // kind/name
}

// strict decodes doc into v, refusing unknown and duplicate fields.
func strict(t *testing.T, doc []byte, v any, what string) {
	t.Helper()
	if err := yaml.UnmarshalStrict(doc, v); err != nil {
		t.Fatalf("%s: %v\n%s", what, err, doc)
	}
}

func render(t *testing.T, release string, values ...string) *manifests {
	t.Helper()
	// No --kube-version: the chart must render with helm's defaults (the
	// API types these manifests are decoded into are those of Kubernetes
	// 1.37, k8s.io/api v0.37; k8s127/ checks the oldest supported, 1.27).
	args := []string{"template", release, chartDir, "--namespace", "agentd"}
	for _, v := range values {
		args = append(args, "-f", filepath.Join(chartDir, "ci", v))
	}
	cmd := exec.Command(helmBin(t), args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("helm %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	m := &manifests{names: map[string]bool{}}
	for _, doc := range bytes.Split(out, []byte("\n---")) {
		var head struct {
			APIVersion string            `json:"apiVersion"`
			Kind       string            `json:"kind"`
			Metadata   metav1.ObjectMeta `json:"metadata"`
		}
		if err := yaml.Unmarshal(doc, &head); err != nil {
			t.Fatalf("%v\n%s", err, doc)
		}
		if head.Kind == "" {
			continue // comments only
		}
		id := head.Kind + "/" + head.Metadata.Name
		if m.names[id] {
			t.Errorf("%s rendered twice", id)
		}
		m.names[id] = true
		switch head.Kind {
		case "Deployment":
			var o appsv1.Deployment
			strict(t, doc, &o, id)
			m.deployments = append(m.deployments, o)
		case "Service":
			var o corev1.Service
			strict(t, doc, &o, id)
			m.services = append(m.services, o)
		case "ConfigMap":
			var o corev1.ConfigMap
			strict(t, doc, &o, id)
			m.configMaps = append(m.configMaps, o)
		case "PodDisruptionBudget":
			var o policyv1.PodDisruptionBudget
			strict(t, doc, &o, id)
			m.pdbs = append(m.pdbs, o)
		case "HorizontalPodAutoscaler":
			var o autoscalingv2.HorizontalPodAutoscaler
			strict(t, doc, &o, id)
			m.hpas = append(m.hpas, o)
		case "NetworkPolicy":
			var o networkingv1.NetworkPolicy
			strict(t, doc, &o, id)
			m.netpols = append(m.netpols, o)
		case "Ingress":
			var o networkingv1.Ingress
			strict(t, doc, &o, id)
			m.ingresses = append(m.ingresses, o)
		case "Job":
			var o batchv1.Job
			strict(t, doc, &o, id)
			m.jobs = append(m.jobs, o)
		case "CronJob":
			var o batchv1.CronJob
			strict(t, doc, &o, id)
			m.cronJobs = append(m.cronJobs, o)
		case "ServiceAccount":
			var o corev1.ServiceAccount
			strict(t, doc, &o, id)
			m.sas = append(m.sas, o)
		case "PersistentVolumeClaim":
			var o corev1.PersistentVolumeClaim
			strict(t, doc, &o, id)
			m.pvcs = append(m.pvcs, o)
		case "ServiceMonitor", "PrometheusRule", "ExternalSecret":
			var o map[string]any
			strict(t, doc, &o, id)
			m.custom = append(m.custom, o)
		default:
			t.Errorf("unexpected kind %s", id)
		}
	}
	return m
}

// agentdConfig loads the rendered agentd.yaml exactly as agentd would.
func agentdConfig(t *testing.T, cm corev1.ConfigMap) *config.Config {
	t.Helper()
	path := filepath.Join(t.TempDir(), "agentd.yaml")
	if err := os.WriteFile(path, []byte(cm.Data["agentd.yaml"]), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path, []string{"AGENTD_STORE_URL=postgres://u:p@db:5432/agentd"})
	if err != nil {
		t.Fatalf("ConfigMap %s: agentd refuses its config: %v\n%s", cm.Name, err, cm.Data["agentd.yaml"])
	}
	return cfg
}

func (m *manifests) configMap(t *testing.T, name string) corev1.ConfigMap {
	t.Helper()
	for _, cm := range m.configMaps {
		if cm.Name == name {
			return cm
		}
	}
	t.Fatalf("no ConfigMap %s", name)
	return corev1.ConfigMap{}
}

func envOf(c corev1.Container, name string) *corev1.EnvVar {
	for i := range c.Env {
		if c.Env[i].Name == name {
			return &c.Env[i]
		}
	}
	return nil
}

// checkPodSecurity: the restricted Pod Security Standard.
func checkPodSecurity(t *testing.T, id string, spec corev1.PodSpec) {
	t.Helper()
	psc := spec.SecurityContext
	if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.SeccompProfile == nil ||
		psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("%s: pod securityContext not restricted: %+v", id, psc)
	}
	if spec.AutomountServiceAccountToken == nil || *spec.AutomountServiceAccountToken {
		t.Errorf("%s: automountServiceAccountToken must be false", id)
	}
	for _, c := range append(spec.InitContainers, spec.Containers...) {
		sc := c.SecurityContext
		switch {
		case sc == nil:
			t.Errorf("%s/%s: no securityContext", id, c.Name)
		case sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation:
			t.Errorf("%s/%s: allowPrivilegeEscalation must be false", id, c.Name)
		case sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem:
			t.Errorf("%s/%s: readOnlyRootFilesystem must be true", id, c.Name)
		case sc.Capabilities == nil || len(sc.Capabilities.Drop) != 1 || sc.Capabilities.Drop[0] != "ALL" || len(sc.Capabilities.Add) > 0:
			t.Errorf("%s/%s: capabilities must drop ALL and add none", id, c.Name)
		case sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot:
			t.Errorf("%s/%s: runAsNonRoot must be true", id, c.Name)
		case sc.Privileged != nil && *sc.Privileged:
			t.Errorf("%s/%s: privileged", id, c.Name)
		}
		if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() || c.Resources.Limits.Memory().IsZero() {
			t.Errorf("%s/%s: resources must set cpu and memory requests and a memory limit: %+v", id, c.Name, c.Resources)
		}
	}
}

// checkDeployment: the invariants of an agentd Deployment.
func checkDeployment(t *testing.T, m *manifests, d appsv1.Deployment) {
	t.Helper()
	id := "Deployment/" + d.Name
	pod := d.Spec.Template
	sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
	if err != nil || !sel.Matches(klabels.Set(pod.Labels)) {
		t.Errorf("%s: selector %v does not match its pod labels %v", id, d.Spec.Selector, pod.Labels)
	}
	checkPodSecurity(t, id, pod.Spec)
	if len(pod.Spec.Containers) != 1 {
		t.Fatalf("%s: want one container", id)
	}
	c := pod.Spec.Containers[0]
	role := pod.Labels["app.kubernetes.io/component"]
	if want := "--role=" + role; len(c.Args) != 2 || c.Args[0] != "serve" || c.Args[1] != want {
		t.Errorf("%s: args %v, want [serve %s]", id, c.Args, want)
	}
	for name, p := range map[string]*corev1.Probe{"startup": c.StartupProbe, "liveness": c.LivenessProbe, "readiness": c.ReadinessProbe} {
		if p == nil || p.HTTPGet == nil {
			t.Errorf("%s: no %s probe", id, name)
			continue
		}
		want := "/readyz"
		if name == "liveness" {
			want = "/livez"
		}
		if p.HTTPGet.Path != want || p.HTTPGet.Port.String() != "http" || p.TimeoutSeconds < 1 || p.PeriodSeconds < 1 {
			t.Errorf("%s: %s probe %+v, want GET %s on port http with timings", id, name, p.HTTPGet, want)
		}
	}
	if sp := c.StartupProbe; sp != nil && sp.PeriodSeconds*sp.FailureThreshold < 30 {
		t.Errorf("%s: startup probe allows only %ds", id, sp.PeriodSeconds*sp.FailureThreshold)
	}

	// The config it mounts is one agentd accepts; the grace period covers
	// the whole drain (no preStop hook: agentd's drain_delay is it).
	var cmName string
	for _, v := range pod.Spec.Volumes {
		if v.Name == "config" && v.ConfigMap != nil {
			cmName = v.ConfigMap.Name
		}
	}
	cfg := agentdConfig(t, m.configMap(t, cmName))
	var preStop time.Duration
	if c.Lifecycle != nil && c.Lifecycle.PreStop != nil {
		if c.Lifecycle.PreStop.Sleep == nil {
			t.Errorf("%s: a preStop hook other than sleep cannot run in a distroless image", id)
		} else {
			preStop = time.Duration(c.Lifecycle.PreStop.Sleep.Seconds) * time.Second
		}
	}
	grace := time.Duration(*pod.Spec.TerminationGracePeriodSeconds) * time.Second
	if need := preStop + cfg.Server.DrainDelay + cfg.Server.DrainTimeout; grace <= need {
		t.Errorf("%s: terminationGracePeriodSeconds %s <= preStop %s + drain_delay %s + drain_timeout %s",
			id, grace, preStop, cfg.Server.DrainDelay, cfg.Server.DrainTimeout)
	}
	if cfg.Server.Addr != ":8080" || c.Ports[0].ContainerPort != 8080 {
		t.Errorf("%s: server.addr %q / containerPort %d", id, cfg.Server.Addr, c.Ports[0].ContainerPort)
	}

	// GOMEMLIMIT below the memory limit (or the limit via the downward API).
	if e := envOf(c, "GOMEMLIMIT"); e == nil {
		t.Errorf("%s: no GOMEMLIMIT", id)
	} else if e.ValueFrom != nil {
		if rf := e.ValueFrom.ResourceFieldRef; rf == nil || rf.Resource != "limits.memory" {
			t.Errorf("%s: GOMEMLIMIT from %+v", id, e.ValueFrom)
		}
	} else {
		v, err := strconv.ParseInt(e.Value, 10, 64)
		limit := c.Resources.Limits.Memory().Value()
		if err != nil || v <= limit/2 || v >= limit {
			t.Errorf("%s: GOMEMLIMIT %q not within (50%%, 100%%) of the limit %d", id, e.Value, limit)
		}
	}
	if e := envOf(c, "AGENTD_STORE_URL"); e == nil {
		t.Errorf("%s: no AGENTD_STORE_URL", id)
	}

	// Anthropic keys: a Secret mounted as files, listed as a key source.
	for _, v := range pod.Spec.Volumes {
		if v.Secret == nil {
			continue
		}
		var mount *corev1.VolumeMount
		for i := range c.VolumeMounts {
			if c.VolumeMounts[i].Name == v.Name {
				mount = &c.VolumeMounts[i]
			}
		}
		if mount == nil || !mount.ReadOnly {
			t.Errorf("%s: secret volume %s not mounted read-only", id, v.Name)
			continue
		}
		found := false
		for _, s := range cfg.Providers.Anthropic.Keys.Sources {
			if strings.HasPrefix(s.File, mount.MountPath+"/") {
				found = true
			}
		}
		if !found {
			t.Errorf("%s: secret %s mounted at %s but no keys.sources[].file there", id, v.Secret.SecretName, mount.MountPath)
		}
	}

	// A PDB covers exactly these pods.
	covered := 0
	for _, pdb := range m.pdbs {
		s, err := metav1.LabelSelectorAsSelector(pdb.Spec.Selector)
		if err != nil {
			t.Fatal(err)
		}
		if s.Matches(klabels.Set(pod.Labels)) {
			covered++
		}
	}
	if covered != 1 {
		t.Errorf("%s: %d PodDisruptionBudgets select its pods, want 1", id, covered)
	}
	// Topology spread constraints select the Deployment's own pods.
	if len(pod.Spec.TopologySpreadConstraints) == 0 {
		t.Errorf("%s: no topologySpreadConstraints", id)
	}
	for _, tsc := range pod.Spec.TopologySpreadConstraints {
		s, _ := metav1.LabelSelectorAsSelector(tsc.LabelSelector)
		if !s.Matches(klabels.Set(pod.Labels)) {
			t.Errorf("%s: topology spread on %s does not select its pods", id, tsc.TopologyKey)
		}
	}
}

// selects returns the Deployments whose pods sel selects.
func selects(ds []appsv1.Deployment, sel map[string]string) []string {
	var out []string
	for _, d := range ds {
		if len(sel) > 0 && klabels.SelectorFromSet(sel).Matches(klabels.Set(d.Spec.Template.Labels)) {
			out = append(out, d.Name)
		}
	}
	return out
}

func checkCommon(t *testing.T, m *manifests) {
	t.Helper()
	if len(m.deployments) != 2 {
		t.Fatalf("want the api and worker Deployments, got %d", len(m.deployments))
	}
	for _, d := range m.deployments {
		checkDeployment(t, m, d)
	}
	for _, s := range m.services {
		got := selects(m.deployments, s.Spec.Selector)
		switch {
		case strings.HasSuffix(s.Name, "-api") && (len(got) != 1 || !strings.HasSuffix(got[0], "-api")):
			t.Errorf("Service %s selects %v, want the api Deployment", s.Name, got)
		case strings.HasSuffix(s.Name, "-metrics") && len(got) != 2:
			t.Errorf("Service %s selects %v, want both Deployments", s.Name, got)
		}
	}
	for _, sa := range m.sas {
		if sa.AutomountServiceAccountToken == nil || *sa.AutomountServiceAccountToken {
			t.Errorf("ServiceAccount %s: automountServiceAccountToken must be false", sa.Name)
		}
	}
	if len(m.netpols) != 1 {
		t.Errorf("want one NetworkPolicy, got %d", len(m.netpols))
	}
	for _, np := range m.netpols {
		s, _ := metav1.LabelSelectorAsSelector(&np.Spec.PodSelector)
		for _, d := range m.deployments {
			if !s.Matches(klabels.Set(d.Spec.Template.Labels)) {
				t.Errorf("NetworkPolicy %s does not cover %s", np.Name, d.Name)
			}
		}
	}
	// The migration hook runs `agentd migrate` before install and upgrade.
	if len(m.jobs) != 1 {
		t.Fatalf("want the migrate hook Job, got %d Jobs", len(m.jobs))
	}
	j := m.jobs[0]
	if hook := j.Annotations["helm.sh/hook"]; hook != "pre-install,pre-upgrade" {
		t.Errorf("Job %s: helm.sh/hook %q", j.Name, hook)
	}
	if args := j.Spec.Template.Spec.Containers[0].Args; len(args) != 1 || args[0] != "migrate" {
		t.Errorf("Job %s: args %v", j.Name, args)
	}
	checkPodSecurity(t, "Job/"+j.Name, j.Spec.Template.Spec)
	for _, v := range j.Spec.Template.Spec.Volumes {
		if v.ConfigMap != nil {
			cm := m.configMap(t, v.ConfigMap.Name)
			if cm.Annotations["helm.sh/hook"] == "" || cm.Annotations["helm.sh/hook-weight"] >= j.Annotations["helm.sh/hook-weight"] {
				t.Errorf("the migrate Job's ConfigMap %s must be a hook created before the Job", cm.Name)
			}
			agentdConfig(t, cm)
		}
	}
}

func TestChartDefault(t *testing.T) {
	m := render(t, "agentd", "default-values.yaml")
	checkCommon(t, m)
	if len(m.ingresses)+len(m.hpas)+len(m.custom)+len(m.cronJobs) != 0 {
		t.Error("optional objects rendered by default")
	}
	for _, d := range m.deployments {
		if d.Spec.Replicas == nil || *d.Spec.Replicas < 2 {
			t.Errorf("%s: want >= 2 replicas by default", d.Name)
		}
		if _, ok := d.Spec.Template.Labels["agentd.io/color"]; ok {
			t.Errorf("%s: color label without color", d.Name)
		}
	}
	cfg := agentdConfig(t, m.configMap(t, "agentd"))
	if cfg.Providers.Anthropic.Simulate != "never" || len(cfg.Providers.Anthropic.Keys.Sources) != 1 {
		t.Errorf("default config: simulate %q, %d key sources", cfg.Providers.Anthropic.Simulate, len(cfg.Providers.Anthropic.Keys.Sources))
	}
}

func TestChartFull(t *testing.T) {
	m := render(t, "agentd", "full-values.yaml")
	checkCommon(t, m)
	if len(m.hpas) != 2 || len(m.ingresses) != 1 || len(m.cronJobs) != 1 || len(m.pvcs) != 1 || len(m.custom) != 3 {
		t.Fatalf("want 2 HPAs, an Ingress, a backup CronJob+PVC and 3 custom objects; got %d %d %d %d %d",
			len(m.hpas), len(m.ingresses), len(m.cronJobs), len(m.pvcs), len(m.custom))
	}
	for _, d := range m.deployments {
		if d.Spec.Replicas != nil {
			t.Errorf("%s: replicas set while an HPA owns them", d.Name)
		}
		if !strings.Contains(d.Spec.Template.Spec.Containers[0].Image, "@sha256:") {
			t.Errorf("%s: image digest not used", d.Name)
		}
		if envOf(d.Spec.Template.Spec.Containers[0], "AGENTD_REDIS_URL") == nil {
			t.Errorf("%s: no AGENTD_REDIS_URL", d.Name)
		}
		if g := *d.Spec.Template.Spec.TerminationGracePeriodSeconds; g != 150 {
			t.Errorf("%s: grace %d, want 10+120+20", d.Name, g)
		}
	}
	names := map[string]bool{}
	for _, d := range m.deployments {
		names[d.Name] = true
	}
	for _, h := range m.hpas {
		if !names[h.Spec.ScaleTargetRef.Name] || h.Spec.MinReplicas == nil || *h.Spec.MinReplicas < 2 || len(h.Spec.Metrics) != 2 {
			t.Errorf("HPA %s: target %s, min %v, %d metrics", h.Name, h.Spec.ScaleTargetRef.Name, h.Spec.MinReplicas, len(h.Spec.Metrics))
		}
	}
	ing := m.ingresses[0]
	for k, want := range map[string]string{
		"nginx.ingress.kubernetes.io/proxy-buffering": "off", "nginx.ingress.kubernetes.io/proxy-read-timeout": "3600",
		"nginx.ingress.kubernetes.io/upstream-hash-by": "$http_agentd_conversation_id"} { // stickySessions
		if ing.Annotations[k] != want {
			t.Errorf("Ingress: %s = %q, want %q", k, ing.Annotations[k], want)
		}
	}
	if b := ing.Spec.Rules[0].HTTP.Paths[0].Backend.Service.Name; b != "agentd-api" {
		t.Errorf("Ingress backend %s", b)
	}
	cj := m.cronJobs[0]
	checkPodSecurity(t, "CronJob/"+cj.Name, cj.Spec.JobTemplate.Spec.Template.Spec)
	if !strings.Contains(strings.Join(cj.Spec.JobTemplate.Spec.Template.Spec.Containers[0].Args, " "), "pg_dump --format=custom") {
		t.Error("backup CronJob does not run pg_dump -Fc")
	}
	// The PrometheusRule carries the rules of deploy/prometheus/alerts.yaml.
	var want ruleFile
	if err := yaml.UnmarshalStrict(readFile(t, "deploy/prometheus/alerts.yaml"), &want); err != nil {
		t.Fatal(err)
	}
	for _, o := range m.custom {
		if o["kind"] != "PrometheusRule" {
			continue
		}
		b, _ := yaml.Marshal(o["spec"])
		var got ruleFile
		if err := yaml.UnmarshalStrict(b, &got); err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Error("PrometheusRule differs from deploy/prometheus/alerts.yaml")
		}
	}
}

// TestChartBlueGreen: both colors install side by side with distinct
// names and selectors; the stable Service selects the live color only.
func TestChartBlueGreen(t *testing.T) {
	blue := render(t, "agentd-blue", "blue-values.yaml")
	green := render(t, "agentd-green", "green-values.yaml")
	stable := render(t, "agentd-live", "stable-values.yaml")
	checkCommon(t, blue)
	checkCommon(t, green)

	for id := range blue.names {
		if green.names[id] {
			t.Errorf("%s rendered by both colors", id)
		}
	}
	all := append(append([]appsv1.Deployment{}, blue.deployments...), green.deployments...)
	for _, m := range []*manifests{blue, green} {
		for _, d := range m.deployments {
			color := d.Spec.Template.Labels["agentd.io/color"]
			if color == "" || d.Spec.Selector.MatchLabels["agentd.io/color"] != color {
				t.Errorf("%s: color label %q not in its selector", d.Name, color)
			}
			if !strings.HasSuffix(d.Name, "-"+color+"-api") && !strings.HasSuffix(d.Name, "-"+color+"-worker") &&
				!strings.Contains(d.Name, color) {
				t.Errorf("%s: name does not carry color %s", d.Name, color)
			}
		}
		// Every selector of one color picks only that color's pods.
		for _, s := range m.services {
			if s.Name == "agentd" {
				continue
			}
			got := selects(all, s.Spec.Selector)
			for _, g := range got {
				if !strings.Contains(g, s.Labels["agentd.io/color"]) {
					t.Errorf("Service %s selects %s of the other color", s.Name, g)
				}
			}
		}
		for _, p := range m.pdbs {
			sel, _ := metav1.LabelSelectorAsSelector(p.Spec.Selector)
			for _, d := range all {
				if sel.Matches(klabels.Set(d.Spec.Template.Labels)) && d.Spec.Template.Labels["agentd.io/color"] != p.Labels["agentd.io/color"] {
					t.Errorf("PDB %s covers %s of the other color", p.Name, d.Name)
				}
			}
		}
	}
	check := func(m *manifests, want string) {
		t.Helper()
		for _, s := range m.services {
			if s.Name != "agentd" {
				continue
			}
			got := selects(all, s.Spec.Selector)
			if len(got) != 1 || got[0] != "agentd-"+want+"-api" {
				t.Errorf("stable Service selects %v, want agentd-%s-api", got, want)
			}
			return
		}
		t.Errorf("no stable Service")
	}
	check(blue, "blue")
	check(stable, "green")
	if len(stable.deployments)+len(stable.configMaps)+len(stable.jobs) != 0 || len(stable.ingresses) != 1 {
		t.Errorf("stableService.only renders only the stable Service and the Ingress: %v", stable.names)
	}
	if b := stable.ingresses[0].Spec.Rules[0].HTTP.Paths[0].Backend.Service.Name; b != "agentd" {
		t.Errorf("Ingress of the stable release routes to %s, want the stable Service", b)
	}
}

// TestChartSimValues: a demo install without keys; GOMEMLIMIT from a
// decimal-unit limit.
func TestChartSimValues(t *testing.T) {
	m := render(t, "demo", "sim-values.yaml")
	checkCommon(t, m)
	for _, d := range m.deployments {
		for _, v := range d.Spec.Template.Spec.Volumes {
			if v.Secret != nil {
				t.Errorf("%s: secret volume without anthropic.existingSecret", d.Name)
			}
		}
		if strings.HasSuffix(d.Name, "-api") {
			e := envOf(d.Spec.Template.Spec.Containers[0], "GOMEMLIMIT")
			if e == nil || e.Value != strconv.FormatInt(int64(0.9*1.5e9), 10) {
				t.Errorf("%s: GOMEMLIMIT %+v, want 90%% of 1.5G", d.Name, e)
			}
		}
	}
	cfg := agentdConfig(t, m.configMap(t, "demo-agentd"))
	if cfg.Providers.Anthropic.Simulate != "always" || len(cfg.Providers.Anthropic.Keys.Sources) != 0 {
		t.Errorf("simulate %q, %d key sources", cfg.Providers.Anthropic.Simulate, len(cfg.Providers.Anthropic.Keys.Sources))
	}
}

// TestChartLint: helm lint with every values file.
func TestChartLint(t *testing.T) {
	helm := helmBin(t)
	files, err := filepath.Glob(filepath.Join(chartDir, "ci", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatal("no values files in ci/")
	}
	for _, f := range files {
		out, err := exec.Command(helm, "lint", "--strict", chartDir, "-f", f).CombinedOutput()
		if err != nil {
			t.Errorf("helm lint -f %s: %v\n%s", filepath.Base(f), err, out)
		}
	}
}
