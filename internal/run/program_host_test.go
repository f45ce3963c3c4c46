package run

import (
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/agentd/agentd/internal/auth"
	"github.com/agentd/agentd/internal/llm/metered"
)

// TestProgramHostKeys: the loopback gateway takes a run's key (x-api-key
// or Bearer) only while it is issued, and hands the call on with the
// run's scope and principal.
func TestProgramHostKeys(t *testing.T) {
	var got *metered.RunScope
	var tenant string
	h := &ProgramHost{Gateway: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = metered.RunScopeFrom(r.Context())
		p, _ := auth.FromContext(r.Context())
		tenant = p.Tenant
		w.WriteHeader(204)
	})}
	t.Cleanup(func() { _ = h.Close() })
	url, err := h.start()
	require.NoError(t, err)
	scope := &metered.RunScope{Tenant: "t1", RunID: "run_1", Agent: "a"}
	key, revoke := h.issue(scope, "conv_1")
	require.True(t, strings.HasPrefix(key, "agentd-run-"))

	post := func(header, value string) int {
		req, err := http.NewRequest("POST", url+"/v1/messages", strings.NewReader(`{}`))
		require.NoError(t, err)
		if header != "" {
			req.Header.Set(header, value)
		}
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		return resp.StatusCode
	}
	assert.Equal(t, 204, post("X-Api-Key", key))
	assert.Same(t, scope, got)
	assert.Equal(t, "t1", tenant)
	got = nil
	assert.Equal(t, 204, post("Authorization", "Bearer "+key))
	assert.Same(t, scope, got)
	assert.Equal(t, 401, post("X-Api-Key", key+"x"))
	assert.Equal(t, 401, post("", ""))
	revoke()
	assert.Equal(t, 401, post("X-Api-Key", key), "a run's key dies with its run")
}
