package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/agentd/agentd/internal/loadgen"
)

// messagesLoad sends Anthropic Messages API calls (agentd load -messages):
// to agentd's gateway, to a bare reverse proxy or to the sim directly, so
// the three can be compared with the same generator.
type messagesLoad struct {
	url    string // base + "/v1/messages"
	model  string
	max    int
	text   string
	stream bool
	client *http.Client

	mu   sync.Mutex
	ttfe loadgen.Samples // streams: scheduled start → first event
}

// call sends one request and reads the whole answer (a stream until
// message_stop).
func (m *messagesLoad) call(ctx context.Context, n int64) error {
	body, _ := json.Marshal(map[string]any{
		"model": m.model, "max_tokens": m.max, "stream": m.stream,
		"messages": []map[string]any{{"role": "user", "content": fmt.Sprintf("%s (#%d)", m.text, n)}},
	})
	resp, err := postOK(ctx, m.client, m.url, body, map[string]string{"Anthropic-Version": "2023-06-01"})
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if !m.stream {
		_, err = io.Copy(io.Discard, resp.Body)
		return err
	}
	br := bufio.NewReader(resp.Body)
	first := true
	for {
		line, err := br.ReadSlice('\n')
		if first && len(line) > 0 {
			first = false
			if at, ok := loadgen.Scheduled(ctx); ok && !loadgen.IsWarmup(ctx) {
				m.mu.Lock()
				m.ttfe.Add(time.Since(at))
				m.mu.Unlock()
			}
		}
		switch {
		case bytes.HasPrefix(line, []byte("event: message_stop")):
			_, _ = io.Copy(io.Discard, br)
			return nil
		case bytes.HasPrefix(line, []byte("event: error")):
			return errors.New("the stream ended with an error event")
		}
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			if errors.Is(err, io.EOF) {
				return errors.New("the stream ended without message_stop")
			}
			return err
		}
	}
}

// firstEvent summarises the time to the first event of the streams.
func (m *messagesLoad) firstEvent() loadgen.Percentiles {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.ttfe.Percentiles()
}
