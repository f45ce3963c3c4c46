// Package deploytest checks the deployment files under deploy/: the Helm
// chart (rendered with a real helm binary, every manifest decoded strictly
// into the Kubernetes API types, invariants checked), the Prometheus alerts
// and the Grafana dashboard (every expression parsed with Prometheus's own
// parser, every agentd metric it names registered by agentd).
//
// It is a module of its own so that its test-only dependencies (k8s.io/api,
// Prometheus) never enter agentd's go.mod or binary:
//
//	cd deploy/deploytest && go test ./...
//
// The chart tests look for helm in $PATH, then in $(go env GOPATH)/bin
// (go install helm.sh/helm/v3/cmd/helm@v3.22.0), and skip without it.
package deploytest
