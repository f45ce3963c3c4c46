package deploytest

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"

	"github.com/agentd/agentd/internal/config"
)

// TestComposeV2 loads deploy/compose/docker-compose.yaml with compose-go,
// the loader (and Compose Specification schema validation) of Compose v2:
// what `docker compose config` does, without a Docker engine. Then every
// agentd service's config, with that service's environment, must be one
// agentd accepts.
func TestComposeV2(t *testing.T) {
	file := filepath.Join(repo, "deploy/compose/docker-compose.yaml")
	opts, err := cli.NewProjectOptions([]string{file},
		cli.WithWorkingDirectory(filepath.Dir(file)),
		cli.WithEnv([]string{"AGENTD_PORT=8080"}),
		cli.WithName("agentd"),
		cli.WithProfiles([]string{"tools"}))
	if err != nil {
		t.Fatal(err)
	}
	project, err := opts.LoadProject(context.Background())
	if err != nil {
		t.Fatalf("Compose v2 refuses %s: %v", file, err)
	}
	want := []string{"api-1", "api-2", "lb", "migrate", "postgres", "redis", "sim", "smoke", "worker-1", "worker-2"}
	for _, name := range want {
		if _, ok := project.Services[name]; !ok {
			t.Errorf("service %s missing", name)
		}
	}
	lb := project.Services["lb"]
	if len(lb.Ports) != 1 || lb.Ports[0].HostIP != "127.0.0.1" {
		t.Errorf("lb publishes %+v: want 127.0.0.1 only while the demo has auth off", lb.Ports)
	}
	agentdYAML := filepath.Join(repo, "deploy/compose/agentd.yaml")
	for _, name := range []string{"api-1", "worker-1", "migrate"} {
		svc := project.Services[name]
		if svc.DependsOn["migrate"].Condition != types.ServiceConditionCompletedSuccessfully && name != "migrate" {
			t.Errorf("%s does not wait for migrate to complete: %+v", name, svc.DependsOn)
		}
		var env []string
		for k, v := range svc.Environment {
			if v != nil && k != "AGENTD_CONFIG" {
				env = append(env, k+"="+*v)
			}
		}
		cfg, err := config.Load(agentdYAML, env)
		if err != nil {
			t.Errorf("service %s: agentd refuses its config with the service's environment: %v", name, err)
			continue
		}
		if cfg.Auth.Mode == config.AuthNone && !strings.Contains(strings.Join(env, " "), "AGENTD_AUTH_ALLOW_UNAUTHENTICATED_NETWORK=true") {
			t.Errorf("service %s: auth off without the explicit opt-in", name)
		}
	}
}
