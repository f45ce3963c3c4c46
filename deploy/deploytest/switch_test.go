package deploytest

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The blue-green switch script (deploy/bluegreen/switch) is tested against
// stand-ins on PATH: kubectl and helm replay a recorded conversation with
// the cluster (each call must be exactly the next expected one; its answer
// is the recorded output and exit code), and date/sleep are a fake clock so
// that the watch loop runs a fixed number of rounds at once. Not exercised
// against a live cluster here (docs/deploy.md says so).

// call is one expected invocation and its recorded answer.
type call struct {
	args string // "kubectl -n agentd get svc agentd ..." (the smoke pod's random suffix reads RANDOM)
	code int
	out  string
}

// fakeTool replays $FAKE_DIR/script: line N is "ARGS\tCODE\tOUTPUT" for call N.
const fakeTool = `#!/usr/bin/env bash
d=$FAKE_DIR
got="$(basename "$0") $*"
got=$(printf '%s' "$got" | sed -E 's/agentd-smoke-(blue|green)-[0-9]+/agentd-smoke-\1-RANDOM/')
n=$(( $(cat "$d/n" 2>/dev/null || echo 0) + 1 ))
echo "$n" > "$d/n"
printf '%s\n' "$got" >> "$d/calls"
line=$(sed -n "${n}p" "$d/script")
if [ -z "$line" ]; then printf 'call %d not expected: %s\n' "$n" "$got" >> "$d/errors"; exit 97; fi
want=${line%%$'\t'*}; rest=${line#*$'\t'}; code=${rest%%$'\t'*}; out=${rest#*$'\t'}
if [ "$got" != "$want" ]; then printf 'call %d:\n  got  %s\n  want %s\n' "$n" "$got" "$want" >> "$d/errors"; exit 98; fi
printf '%b' "$out"
exit "$code"
`

// fakeClock: date +%s reads the clock, sleep N advances it.
const fakeDate = `#!/usr/bin/env bash
if [ "${!#}" = "+%s" ]; then cat "$FAKE_DIR/clock"; else echo 00:00:00; fi
`
const fakeSleep = `#!/usr/bin/env bash
echo $(( $(cat "$FAKE_DIR/clock") + ${1%s} )) > "$FAKE_DIR/clock"
`

// runSwitch runs the script with args against the expected calls; it fails
// the test on any unexpected, wrong or missing call.
func runSwitch(t *testing.T, script []call, args ...string) (code int, stderr string) {
	t.Helper()
	dir := t.TempDir()
	bin := filepath.Join(dir, "bin")
	if err := os.Mkdir(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, body := range map[string]string{"kubectl": fakeTool, "helm": fakeTool, "date": fakeDate, "sleep": fakeSleep} {
		if err := os.WriteFile(filepath.Join(bin, name), []byte(body), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	var lines []string
	for _, c := range script {
		lines = append(lines, fmt.Sprintf("%s\t%d\t%s", c.args, c.code, strings.ReplaceAll(c.out, "\n", `\n`)))
	}
	if err := os.WriteFile(filepath.Join(dir, "script"), []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "clock"), []byte("1000000\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	cmd := exec.Command(filepath.Join(repo, "deploy/bluegreen/switch"), args...)
	cmd.Env = append(os.Environ(), "PATH="+bin+":"+os.Getenv("PATH"), "FAKE_DIR="+dir, "SMOKE_API_KEY=")
	var errBuf bytes.Buffer
	cmd.Stderr = &errBuf
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exit):
		code = exit.ExitCode()
	default:
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "errors")); len(b) > 0 {
		t.Errorf("wrong calls to the stand-ins:\n%s\nstderr:\n%s", b, errBuf.String())
	}
	got, _ := os.ReadFile(filepath.Join(dir, "calls"))
	gotCalls := strings.Split(strings.TrimSuffix(string(got), "\n"), "\n")
	if len(got) == 0 {
		gotCalls = nil
	}
	if len(gotCalls) != len(script) {
		t.Errorf("%d calls, want %d:\n%s\nstderr:\n%s", len(gotCalls), len(script), got, errBuf.String())
	}
	return code, errBuf.String()
}

// The recorded cluster: live color blue, idle green, namespace agentd.
const (
	chartArg  = "/charts/agentd"
	image     = "ghcr.io/agentd/agentd:v1.4.0"
	smokeOpts = `--rm -i --restart=Never --quiet --image=` + image +
		` --labels=app.kubernetes.io/name=agentd,app.kubernetes.io/component=smoke` +
		` --overrides={"spec":{"automountServiceAccountToken":false,"securityContext":{"runAsNonRoot":true,"runAsUser":65532,"seccompProfile":{"type":"RuntimeDefault"}}}}`
)

func getLive(color string) call {
	return call{args: `kubectl -n agentd get svc agentd -o jsonpath={.spec.selector.agentd\.io/color}`, out: color}
}

func patchTo(color string) call {
	return call{args: `kubectl -n agentd patch svc agentd --type merge -p {"metadata":{"annotations":{"agentd.io/live-color":"` +
		color + `"}},"spec":{"selector":{"agentd.io/color":"` + color + `"}}}`}
}

// deployGreen: helm, the rollout gate, the image lookup and the smoke pod.
func deployGreen(rolloutCode, smokeCode int) []call {
	c := []call{
		{args: "helm upgrade --install agentd-green " + chartArg + " -n agentd -f prod.yaml --set color=green --set image.tag=v1.4.0 --wait --timeout 10m"},
		{args: "kubectl -n agentd rollout status deploy/agentd-green-api --timeout=5m", code: rolloutCode},
	}
	if rolloutCode != 0 {
		return c
	}
	return append(c,
		call{args: "kubectl -n agentd rollout status deploy/agentd-green-worker --timeout=5m"},
		call{args: "kubectl -n agentd get deploy agentd-green-api -o jsonpath={.spec.template.spec.containers[0].image}", out: image},
		call{args: "kubectl -n agentd run agentd-smoke-green-RANDOM " + smokeOpts + " -- smoke http://agentd-green-api", code: smokeCode},
	)
}

// counters: the new color's api pods and their request counters.
func counters(ok, errs int) []call {
	metrics := fmt.Sprintf("agentd_http_requests_total{code=\"200\",route=\"/v1/chat\"} %d\nagentd_http_requests_total{code=\"503\",route=\"/v1/chat\"} %d\n", ok, errs)
	return []call{
		{args: "kubectl -n agentd get pods -l agentd.io/color=green,app.kubernetes.io/component=api -o jsonpath={.items[*].metadata.name}", out: "api-0 api-1"},
		{args: "kubectl -n agentd get --raw /api/v1/namespaces/agentd/pods/api-0:8080/proxy/metrics", out: metrics},
		{args: "kubectl -n agentd get --raw /api/v1/namespaces/agentd/pods/api-1:8080/proxy/metrics", out: "# no traffic yet\n"},
	}
}

func unavailable(n string) call {
	return call{args: "kubectl -n agentd get deploy agentd-green-api -o jsonpath={.status.unavailableReplicas}", out: n}
}

func cat(parts ...[]call) []call {
	var out []call
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

var switchArgs = []string{"-n", "agentd", "--chart", chartArg, "--image-tag", "v1.4.0", "-f", "prod.yaml", "--watch", "30"}

// TestSwitchHappyPath: deploy green, pass the gates, switch, watch two
// rounds (30 s, 15 s apart) with a low 5xx ratio: green stays live.
func TestSwitchHappyPath(t *testing.T) {
	script := cat([]call{getLive("blue")}, deployGreen(0, 0), []call{patchTo("green")},
		counters(100, 0),
		counters(200, 1), []call{unavailable("")}, // 100 requests, 1 % 5xx <= 2 %
		counters(400, 2), []call{unavailable("0")},
	)
	code, stderr := runSwitch(t, script, switchArgs...)
	if code != 0 || !strings.Contains(stderr, "green is live") {
		t.Errorf("exit %d, want 0 and green live:\n%s", code, stderr)
	}
}

// TestSwitchRollsBackOnErrors: after the switch the 5xx ratio exceeds
// --max-error-ratio: the selector goes back to blue at once.
func TestSwitchRollsBackOnErrors(t *testing.T) {
	script := cat([]call{getLive("blue")}, deployGreen(0, 0), []call{patchTo("green")},
		counters(100, 0),
		counters(150, 10), []call{unavailable("")}, // 60 requests, 10 of them 5xx
		[]call{patchTo("blue")},
	)
	code, stderr := runSwitch(t, script, switchArgs...)
	if code != 1 || !strings.Contains(stderr, "WATCH FAILED: rolling back to blue") {
		t.Errorf("exit %d, want 1 and a rollback:\n%s", code, stderr)
	}
}

// TestSwitchRollsBackOnUnavailablePods: pods of the new color become
// unavailable during the watch: rollback, whatever the error ratio.
func TestSwitchRollsBackOnUnavailablePods(t *testing.T) {
	script := cat([]call{getLive("blue")}, deployGreen(0, 0), []call{patchTo("green")},
		counters(100, 0),
		counters(101, 0), []call{unavailable("1")},
		[]call{patchTo("blue")},
	)
	code, stderr := runSwitch(t, script, switchArgs...)
	if code != 1 || !strings.Contains(stderr, "1 api pods of green unavailable") {
		t.Errorf("exit %d, want 1 and a rollback:\n%s", code, stderr)
	}
}

// TestSwitchTooFewRequests: below --min-requests the ratio is not judged
// (3 errors out of 5 requests do not roll back).
func TestSwitchTooFewRequests(t *testing.T) {
	script := cat([]call{getLive("blue")}, deployGreen(0, 0), []call{patchTo("green")},
		counters(10, 0),
		counters(12, 3), []call{unavailable("")},
		counters(12, 3), []call{unavailable("")},
	)
	code, stderr := runSwitch(t, script, switchArgs...)
	if code != 0 {
		t.Errorf("exit %d, want 0:\n%s", code, stderr)
	}
}

// TestSwitchHealthGate: a failed smoke test or rollout switches nothing.
func TestSwitchHealthGate(t *testing.T) {
	t.Run("smoke", func(t *testing.T) {
		code, stderr := runSwitch(t, cat([]call{getLive("blue")}, deployGreen(0, 1)), switchArgs...)
		if code != 1 || !strings.Contains(stderr, "SMOKE FAILED on green: traffic stays on blue") {
			t.Errorf("exit %d, want 1:\n%s", code, stderr)
		}
	})
	t.Run("rollout", func(t *testing.T) {
		code, stderr := runSwitch(t, cat([]call{getLive("blue")}, deployGreen(1, 0)), switchArgs...)
		if code == 0 {
			t.Errorf("exit 0 after a failed rollout:\n%s", stderr)
		}
	})
}

// TestSwitchRetire: --retire scales the idle color (here blue, green is live) to 0.
func TestSwitchRetire(t *testing.T) {
	script := []call{getLive("green"),
		{args: "kubectl -n agentd scale deploy -l agentd.io/color=blue,app.kubernetes.io/name=agentd --replicas=0"}}
	if code, stderr := runSwitch(t, script, "-n", "agentd", "--retire"); code != 0 {
		t.Errorf("exit %d:\n%s", code, stderr)
	}
}

// TestSwitchRefusesBadInput: bad arguments are refused before any call to
// the cluster; a stable Service without a color is refused after looking.
func TestSwitchRefusesBadInput(t *testing.T) {
	for name, args := range map[string][]string{
		"unknown flag":   {"--colour", "blue"},
		"no image tag":   {"-n", "agentd"},
		"bad image tag":  {"--image-tag", `v1"}},"x":{"`},
		"missing value":  {"--image-tag"},
		"watch not int":  {"--image-tag", "v1", "--watch", "5m"},
		"ratio too big":  {"--image-tag", "v1", "--max-error-ratio", "2"},
		"bad namespace":  {"--image-tag", "v1", "-n", "Agentd;"},
		"min requests":   {"--image-tag", "v1", "--min-requests", "-1"},
		"empty ratio":    {"--image-tag", "v1", "--max-error-ratio", ""},
		"bad stable svc": {"--image-tag", "v1", "--stable-service", "a b"},
	} {
		t.Run(name, func(t *testing.T) {
			if code, stderr := runSwitch(t, nil, args...); code != 2 {
				t.Errorf("exit %d, want 2:\n%s", code, stderr)
			}
		})
	}
	t.Run("no color selector", func(t *testing.T) {
		code, stderr := runSwitch(t, []call{getLive("")}, switchArgs...)
		if code != 1 || !strings.Contains(stderr, "has no blue/green selector") {
			t.Errorf("exit %d, want 1:\n%s", code, stderr)
		}
	})
}
