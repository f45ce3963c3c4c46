package deploytest

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/agentd/agentd/internal/config"
)

// dockerStage is one FROM … stage of the Dockerfile: its image, its ENV
// and the file it copies to /etc/agentd/agentd.yaml.
type dockerStage struct {
	name, from string
	env        []string // KEY=value
	config     string   // repository path of the baked-in config
}

// dockerfile parses the little of Dockerfile syntax the repository's
// Dockerfile uses: ARG defaults, FROM, ENV (KEY=value pairs, continued
// lines) and COPY.
func dockerfile(t *testing.T) (args map[string]string, stages []dockerStage) {
	t.Helper()
	text := strings.ReplaceAll(string(readFile(t, "Dockerfile")), "\\\n", " ")
	args = map[string]string{}
	expand := func(s string) string {
		return os.Expand(s, func(k string) string { return args[k] })
	}
	for _, line := range strings.Split(text, "\n") {
		f := strings.Fields(line)
		if len(f) < 2 || strings.HasPrefix(f[0], "#") {
			continue
		}
		switch strings.ToUpper(f[0]) {
		case "ARG":
			if k, v, ok := strings.Cut(f[1], "="); ok && len(stages) == 0 {
				args[k] = v
			}
		case "FROM":
			st := dockerStage{from: expand(f[1])}
			if len(f) == 4 && strings.EqualFold(f[2], "AS") {
				st.name = f[3]
			}
			stages = append(stages, st)
		case "ENV":
			if len(stages) > 0 {
				stages[len(stages)-1].env = append(stages[len(stages)-1].env, f[1:]...)
			}
		case "COPY":
			if len(stages) > 0 && f[len(f)-1] == "/etc/agentd/agentd.yaml" && !strings.HasPrefix(f[len(f)-2], "--") {
				stages[len(stages)-1].config = f[len(f)-2]
			}
		}
	}
	return args, stages
}

// TestImageSecureByDefault: the config baked into the runtime and debug
// images, loaded with the images' own environment, asks for API keys;
// the README's demo config (auth off) is refused on the images' address.
func TestImageSecureByDefault(t *testing.T) {
	_, stages := dockerfile(t)
	checked := 0
	for _, st := range stages {
		if st.config == "" {
			continue
		}
		checked++
		cfg, err := config.Load(filepath.Join(repo, st.config), st.env)
		if err != nil {
			t.Errorf("stage %s: agentd refuses the image's config %s with the image's ENV %v: %v", st.name, st.config, st.env, err)
			continue
		}
		if cfg.Auth.Mode != config.AuthKeys {
			t.Errorf("stage %s: %s has auth.mode %q, want %q", st.name, st.config, cfg.Auth.Mode, config.AuthKeys)
		}
		if config.LoopbackAddr(cfg.Server.Addr) {
			t.Errorf("stage %s: server.addr %q is loopback: unreachable through a published port", st.name, cfg.Server.Addr)
		}
		if _, err := config.Load(filepath.Join(repo, "examples/agentd.yaml"), st.env); err == nil ||
			!strings.Contains(err.Error(), "auth.allow_unauthenticated_network") {
			t.Errorf("stage %s: examples/agentd.yaml (auth off) with the image's ENV: want refused, got %v", st.name, err)
		}
	}
	if checked != 2 {
		t.Errorf("want the runtime and debug stages to bake in a config, found %d", checked)
	}
}

var (
	// pinnedRE: an exact version (major.minor.patch, or major.minor for
	// PostgreSQL, whose minor releases are its patch releases) and the
	// digest of the image's multi-platform index. Distroless publishes no
	// version tags (the Debian release is in the name); its digest is the pin.
	pinnedRE = regexp.MustCompile(`^(gcr\.io/distroless/[a-z0-9-]+:[a-z-]+|[a-z0-9./-]+:\d+\.\d+(\.\d+)?(-[a-z0-9.]+)?)@sha256:[0-9a-f]{64}$`)
)

// TestBaseImagesPinned: every base image of the Dockerfile and every image
// of the compose file and the chart's backup job is pinned to an exact
// version and a digest.
func TestBaseImagesPinned(t *testing.T) {
	_, stages := dockerfile(t)
	names := map[string]bool{}
	for _, st := range stages {
		if !names[st.from] && !pinnedRE.MatchString(st.from) {
			t.Errorf("Dockerfile: FROM %s (stage %s) is not pinned to an exact version and a digest", st.from, st.name)
		}
		names[st.name] = true
	}
	if len(stages) < 4 {
		t.Fatalf("parsed %d stages of the Dockerfile", len(stages))
	}

	var compose struct {
		Services map[string]struct {
			Image string `json:"image"`
		} `json:"services"`
	}
	if err := yaml.Unmarshal(readFile(t, "deploy/compose/docker-compose.yaml"), &compose); err != nil {
		t.Fatal(err)
	}
	for name, s := range compose.Services {
		if s.Image == "" || strings.HasPrefix(s.Image, "${AGENTD_IMAGE") {
			continue // agentd itself, built from the Dockerfile
		}
		if !pinnedRE.MatchString(s.Image) {
			t.Errorf("compose service %s: image %s is not pinned to an exact version and a digest", name, s.Image)
		}
	}

	var values struct {
		Backup struct {
			Image string `json:"image"`
		} `json:"backup"`
	}
	if err := yaml.Unmarshal(readFile(t, "deploy/helm/agentd/values.yaml"), &values); err != nil {
		t.Fatal(err)
	}
	if !pinnedRE.MatchString(values.Backup.Image) {
		t.Errorf("chart values backup.image %s is not pinned to an exact version and a digest", values.Backup.Image)
	}
}
