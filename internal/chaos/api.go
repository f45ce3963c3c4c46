package chaos

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"time"
)

// run is what the kit reads of a run.
type run struct {
	ID             string `json:"id"`
	Status         string `json:"status"`
	Attempt        int    `json:"attempt"`
	Steps          int    `json:"steps"`
	Error          string `json:"error"`
	ConversationID string `json:"conversation_id"`
	AgentDigest    string `json:"agent_digest"`
	Input          struct {
		Message string `json:"message"`
	} `json:"input"`
}

func (r run) terminal() bool {
	return r.Status == "succeeded" || r.Status == "failed" || r.Status == "canceled"
}

// submitRun posts a run under an Idempotency-Key and returns the status
// and the run id (on 202).
func submitRun(ctx context.Context, base, key, message string) (int, string, error) {
	body, _ := json.Marshal(map[string]string{"agent": "demo", "message": message})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/v1/runs", bytes.NewReader(body))
	if err != nil {
		return 0, "", err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", key)
	resp, err := client.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusAccepted {
		return resp.StatusCode, "", fmt.Errorf("POST /v1/runs: %d %s", resp.StatusCode, bytes.TrimSpace(raw))
	}
	var r run
	if err := json.Unmarshal(raw, &r); err != nil || r.ID == "" {
		return resp.StatusCode, "", fmt.Errorf("POST /v1/runs: bad body %s", raw)
	}
	return resp.StatusCode, r.ID, nil
}

// getJSON GETs url into v.
func getJSON(ctx context.Context, url string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %d %s", url, resp.StatusCode, bytes.TrimSpace(raw))
	}
	return json.Unmarshal(raw, v)
}

// allRuns lists every run (following the cursor).
func allRuns(ctx context.Context, base string) (map[string]run, error) {
	out := map[string]run{}
	cursor := ""
	for {
		var page struct {
			Runs       []run  `json:"runs"`
			NextCursor string `json:"next_cursor"`
		}
		u := base + "/v1/runs?limit=1000"
		if cursor != "" {
			u += "&cursor=" + cursor
		}
		if err := getJSON(ctx, u, &page); err != nil {
			return nil, err
		}
		for _, r := range page.Runs {
			out[r.ID] = r
		}
		if page.NextCursor == "" {
			return out, nil
		}
		cursor = page.NextCursor
	}
}

// runEvents reads the stored events of a finished run (its SSE stream
// ends after done) and returns their types in order and their ids.
func runEvents(ctx context.Context, base, id string) ([]string, []int64, error) {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/v1/runs/"+id+"/events", nil)
	if err != nil {
		return nil, nil, err
	}
	req.Header.Set("Accept", "text/event-stream")
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		return nil, nil, fmt.Errorf("GET events of %s: %d %s", id, resp.StatusCode, b)
	}
	var types []string
	var ids []int64
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64<<10), 4<<20)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "id:"):
			var n int64
			fmt.Sscan(strings.TrimSpace(line[3:]), &n)
			ids = append(ids, n)
		case strings.HasPrefix(line, "event:"):
			types = append(types, strings.TrimSpace(line[6:]))
		}
	}
	return types, ids, sc.Err()
}

// conversationLen is the number of messages of a conversation.
func conversationLen(ctx context.Context, base, convID string) (int, error) {
	var conv struct {
		Messages []json.RawMessage `json:"messages"`
	}
	if err := getJSON(ctx, base+"/v1/conversations/"+convID, &conv); err != nil {
		return 0, err
	}
	return len(conv.Messages), nil
}

// ledgerByText re-keys the sim's ledger by the text of the first user
// message.
func ledgerByText(ledger map[string]map[int]int) map[string]map[int]int {
	out := make(map[string]map[int]int, len(ledger))
	for raw, counts := range ledger {
		out[jsonText(raw)] = counts
	}
	return out
}

// percentile of sorted durations (nearest rank).
func percentile(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	i := int(float64(len(d))*p+0.5) - 1
	if i < 0 {
		i = 0
	}
	if i >= len(d) {
		i = len(d) - 1
	}
	return d[i]
}

// logTimes returns the times of the JSON log lines of path whose msg is msg.
func logTimes(path, msg string) []time.Time {
	b, err := readFile(path)
	if err != nil {
		return nil
	}
	var out []time.Time
	for _, line := range bytes.Split(b, []byte("\n")) {
		if !bytes.Contains(line, []byte(msg)) {
			continue
		}
		var rec struct {
			Time time.Time `json:"time"`
			Msg  string    `json:"msg"`
		}
		if json.Unmarshal(line, &rec) == nil && rec.Msg == msg {
			out = append(out, rec.Time)
		}
	}
	return out
}
