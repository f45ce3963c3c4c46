package app

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/require"

	"github.com/agentd/agentd/internal/store"
	"github.com/agentd/agentd/internal/store/sqlite"
)

// The process serves feedback on its store: a chat's run rated through the
// API is stored, listed and counted, and feedback past retention.usage is
// deleted by the retention sweeper.
func TestFeedbackWired(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	a, _ := newTestAppIn(t, dir, "")
	ctx := t.Context()
	st, err := sqlite.Open(ctx, filepath.Join(dir, "agentd.db"))
	require.NoError(t, err)
	t.Cleanup(func() { _ = st.Close() })
	old, err := st.PutFeedback(ctx, store.FeedbackEntry{ID: "fb_old", Tenant: "default", RunID: "run_old", Agent: "demo",
		Rating: store.RatingNegative, UpdatedAt: time.Now().Add(-100 * 24 * time.Hour)})
	require.NoError(t, err)

	runCtx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- a.Run(runCtx) }()
	defer func() {
		cancel()
		require.NoError(t, <-errc)
	}()
	waitReady(t, a)
	base := "http://" + a.Addr().String()
	post := func(path, body string) (int, []byte) {
		t.Helper()
		resp, err := http.Post(base+path, "application/json", strings.NewReader(body))
		require.NoError(t, err)
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		return resp.StatusCode, b
	}
	code, body := post("/v1/chat", `{"agent":"demo","message":"hello"}`)
	require.Equal(t, http.StatusOK, code, "body: %s", body)
	var ans struct {
		RunID string `json:"run_id"`
	}
	require.NoError(t, json.Unmarshal(body, &ans))
	code, body = post("/v1/runs/"+ans.RunID+"/feedback", `{"rating":1,"tags":["fast"]}`)
	require.Equal(t, http.StatusCreated, code, "body: %s", body)

	// The sweep runs at start-up, beside the server: wait for it.
	require.Eventually(t, func() bool {
		var m dto.Metric
		require.NoError(t, a.metrics.RetentionDeleted.WithLabelValues("feedback").Write(&m))
		return m.GetCounter().GetValue() == 1
	}, 10*time.Second, 10*time.Millisecond, "%s deleted by the retention sweep", old.ID)

	resp, err := http.Get(base + "/v1/feedback")
	require.NoError(t, err)
	var list struct {
		Feedback []struct {
			RunID  string `json:"run_id"`
			Rating int    `json:"rating"`
		} `json:"feedback"`
	}
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&list))
	resp.Body.Close()
	require.Len(t, list.Feedback, 1, "the old entry is gone, the new one listed")
	require.Equal(t, ans.RunID, list.Feedback[0].RunID)

	var m dto.Metric
	require.NoError(t, a.metrics.Feedback.WithLabelValues("demo", "positive").Write(&m))
	require.Equal(t, 1.0, m.GetCounter().GetValue())
}
