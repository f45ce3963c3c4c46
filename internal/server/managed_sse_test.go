package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/anthropics/anthropic-sdk-go/v2"
	"github.com/anthropics/anthropic-sdk-go/v2/packages/ssestream"
	"github.com/stretchr/testify/require"

	"github.com/agentd/agentd/internal/managed"
	"github.com/agentd/agentd/internal/run"
	"github.com/agentd/agentd/internal/store"
)

type teeBody struct {
	io.Reader
	io.Closer
}

// The Managed Agents stream as the SDK's ssestream reads it: headers
// before any event, ping frames skipped, every event decoded as its
// variant, an error frame returned as *anthropic.Error.
func TestManagedStreamFrames(t *testing.T) {
	t.Parallel()
	s := &Server{ping: 10 * time.Millisecond}
	gotHeaders := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		m := s.startManagedStream(w)
		defer m.Close()
		select { // nothing is written until the client has the headers
		case <-gotHeaders:
		case <-time.After(10 * time.Second):
			return
		}
		time.Sleep(50 * time.Millisecond) // idle: pings
		tr := &managed.Translator{}
		for i, p := range []run.EventData{run.StartEvent{}, run.TextDeltaEvent{Step: 1, Text: "hi"}, run.UsageEvent{Step: 1}, run.Answer{Text: "hi"}} {
			b, _ := json.Marshal(p)
			outs, err := tr.Translate(store.Event{RunID: "r", Seq: int64(i + 1), Type: p.EventType(), Data: b, CreatedAt: time.Now()})
			if err != nil {
				panic(err)
			}
			if err := m.Events(outs); err != nil { // several frames, one flush
				return
			}
		}
		_ = m.Error(http.StatusServiceUnavailable, "the stream ends here", "req_1")
	}))
	t.Cleanup(srv.Close)

	resp, err := http.Get(srv.URL)
	require.NoError(t, err, "the headers arrive before any event")
	close(gotHeaders)
	require.Equal(t, "text/event-stream", resp.Header.Get("Content-Type"))
	var raw bytes.Buffer
	resp.Body = teeBody{Reader: io.TeeReader(resp.Body, &raw), Closer: resp.Body}
	stream := ssestream.NewStream[anthropic.BetaManagedAgentsStreamSessionEventsUnion](ssestream.NewDecoder(resp), nil)
	defer stream.Close()
	var types []string
	for stream.Next() {
		ev := stream.Current()
		require.NotNil(t, ev.AsAny(), ev.Type)
		types = append(types, ev.Type)
	}
	require.Equal(t, []string{"session.status_running", "span.model_request_start", "event_start", "event_delta",
		"agent.message", "span.model_request_end", "session.usage", "session.status_idle"}, types)
	var ae *anthropic.Error
	require.True(t, errors.As(stream.Err(), &ae), "an error frame is the SDK's *anthropic.Error: %v", stream.Err())
	require.Contains(t, ae.Error(), "the stream ends here")
	require.Contains(t, raw.String(), "event: ping\ndata: {\"type\":\"ping\"}\n\n", "idle streams are pinged")
	require.Contains(t, raw.String(), "event: session.status_running\nid: sevt_r_1\n")
}
