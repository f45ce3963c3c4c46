// Package k8s127 checks the chart's manifests against the API of the oldest
// supported Kubernetes version, 1.27: every object rendered with every
// deploy/helm/agentd/ci values file is decoded strictly (an unknown field
// is an error) into the Go types of k8s.io/api v0.27, the schema that
// release's API server validates with. deploy/deploytest does the same with
// the newest supported version (k8s.io/api v0.37) and checks the chart's
// invariants. A module of its own: one build cannot hold two versions of
// k8s.io/api.
package k8s127

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"sigs.k8s.io/yaml"
)

const chartDir = "../../helm/agentd"

// kinds maps apiVersion/kind to a new object of Kubernetes 1.27's API.
var kinds = map[string]func() any{
	"apps/v1/Deployment":                     func() any { return &appsv1.Deployment{} },
	"v1/Service":                             func() any { return &corev1.Service{} },
	"v1/ConfigMap":                           func() any { return &corev1.ConfigMap{} },
	"v1/ServiceAccount":                      func() any { return &corev1.ServiceAccount{} },
	"v1/PersistentVolumeClaim":               func() any { return &corev1.PersistentVolumeClaim{} },
	"policy/v1/PodDisruptionBudget":          func() any { return &policyv1.PodDisruptionBudget{} },
	"autoscaling/v2/HorizontalPodAutoscaler": func() any { return &autoscalingv2.HorizontalPodAutoscaler{} },
	"networking.k8s.io/v1/NetworkPolicy":     func() any { return &networkingv1.NetworkPolicy{} },
	"networking.k8s.io/v1/Ingress":           func() any { return &networkingv1.Ingress{} },
	"batch/v1/Job":                           func() any { return &batchv1.Job{} },
	"batch/v1/CronJob":                       func() any { return &batchv1.CronJob{} },
}

// custom resources: their schemas come with their operators, not Kubernetes.
var custom = map[string]bool{
	"monitoring.coreos.com/v1/ServiceMonitor": true,
	"monitoring.coreos.com/v1/PrometheusRule": true,
	"external-secrets.io/v1/ExternalSecret":   true,
}

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
	const msg = "helm not installed: go install helm.sh/helm/v3/cmd/helm@v3.22.0"
	if os.Getenv("AGENTD_DEPLOYTEST_REQUIRE_HELM") != "" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

func TestChartOnKubernetes127(t *testing.T) {
	helm := helmBin(t)
	files, err := filepath.Glob(filepath.Join(chartDir, "ci", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatal("no values files in ci/")
	}
	seen := map[string]int{}
	for _, f := range files {
		args := []string{"template", "agentd", chartDir, "--namespace", "agentd", "--kube-version", "1.27.0", "-f", f}
		var stderr bytes.Buffer
		cmd := exec.Command(helm, args...)
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("helm %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
		}
		for _, doc := range bytes.Split(out, []byte("\n---")) {
			var head struct {
				APIVersion string `json:"apiVersion"`
				Kind       string `json:"kind"`
				Metadata   struct {
					Name string `json:"name"`
				} `json:"metadata"`
			}
			if err := yaml.Unmarshal(doc, &head); err != nil {
				t.Fatalf("%s: %v\n%s", filepath.Base(f), err, doc)
			}
			if head.Kind == "" {
				continue
			}
			gvk := head.APIVersion + "/" + head.Kind
			id := filepath.Base(f) + ": " + head.Kind + "/" + head.Metadata.Name
			if custom[gvk] {
				continue
			}
			newObj, ok := kinds[gvk]
			if !ok {
				t.Errorf("%s: %s is not an API of Kubernetes 1.27 known to this test", id, gvk)
				continue
			}
			if err := yaml.UnmarshalStrict(doc, newObj()); err != nil {
				t.Errorf("%s: not valid for Kubernetes 1.27: %v", id, err)
				continue
			}
			seen[gvk]++
		}
	}
	for gvk := range kinds {
		if seen[gvk] == 0 {
			t.Errorf("no %s rendered by any ci values file: its check never runs", gvk)
		}
	}
}
