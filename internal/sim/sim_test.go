package sim

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	anthropic "github.com/anthropics/anthropic-sdk-go/v2"
	"github.com/anthropics/anthropic-sdk-go/v2/option"
	"github.com/stretchr/testify/require"
)

const testKey = "sk-sim-test"

func newSim(t *testing.T, cfg Config) (*Server, *httptest.Server) {
	t.Helper()
	s := New(cfg, nil)
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	return s, srv
}

func newClient(srv *httptest.Server, key string) anthropic.Client {
	return anthropic.NewClient(
		option.WithoutEnvironmentDefaults(),
		option.WithBaseURL(srv.URL),
		option.WithAPIKey(key),
		option.WithMaxRetries(0),
	)
}

var getTimeTool = anthropic.ToolUnionParam{OfTool: &anthropic.ToolParam{
	Name:        "get_time",
	Description: anthropic.String("Returns the current time in a time zone."),
	InputSchema: anthropic.ToolInputSchemaParam{
		Properties: map[string]any{
			"zone":    map[string]any{"type": "string", "enum": []string{"UTC", "CET"}},
			"format":  map[string]any{"type": "string"},
			"offset":  map[string]any{"type": "integer"},
			"precise": map[string]any{"type": "boolean"},
			"tags":    map[string]any{"type": "array", "items": map[string]any{"type": "string"}},
			"opts":    map[string]any{"type": "object"},
			"ratio":   map[string]any{"type": []string{"number", "null"}},
		},
		Required: []string{"zone"},
	},
}}

var readFileTool = anthropic.ToolUnionParam{OfTool: &anthropic.ToolParam{
	Name: "read_file",
	InputSchema: anthropic.ToolInputSchemaParam{
		Properties: map[string]any{"path": map[string]any{"type": "string"}},
		Required:   []string{"path"},
	},
}}

func userParams(text string, tools ...anthropic.ToolUnionParam) anthropic.MessageNewParams {
	return anthropic.MessageNewParams{
		Model:     anthropic.ModelClaudeSonnet4_5,
		MaxTokens: 1024,
		System:    []anthropic.TextBlockParam{{Text: "You are a test."}},
		Messages:  []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock(text))},
		Tools:     tools,
	}
}

func streamMessage(t *testing.T, c anthropic.Client, p anthropic.MessageNewParams) (anthropic.Message, error) {
	t.Helper()
	stream := c.Messages.NewStreaming(context.Background(), p)
	defer stream.Close()
	var msg anthropic.Message
	for stream.Next() {
		require.NoError(t, msg.Accumulate(stream.Current()))
	}
	return msg, stream.Err()
}

func TestSDKNonStream(t *testing.T) {
	s, srv := newSim(t, Config{APIKey: testKey})
	c := newClient(srv, testKey)
	msg, err := c.Messages.New(context.Background(), userParams("Hello there, how are you today?"))
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(msg.ID, "msg_"))
	require.Equal(t, anthropic.ModelClaudeSonnet4_5, msg.Model)
	require.Equal(t, anthropic.StopReasonEndTurn, msg.StopReason)
	require.Len(t, msg.Content, 1)
	require.Equal(t, "text", msg.Content[0].Type)
	text := msg.Content[0].Text
	require.Equal(t, "Simulated answer to: Hello there, how are you today? lorem ipsum dolor.", text)
	require.Len(t, strings.Fields(text), defaultWords)
	require.Positive(t, msg.Usage.InputTokens)
	require.Equal(t, int64((len(text)+3)/4), msg.Usage.OutputTokens)
	require.EqualValues(t, 1, s.Requests())
}

// A comma-separated APIKey accepts each of its keys and nothing else, as
// the official client sends them.
func TestSeveralAPIKeys(t *testing.T) {
	_, srv := newSim(t, Config{APIKey: "key-one,key-two"})
	for _, key := range []string{"key-one", "key-two"} {
		c := newClient(srv, key)
		_, err := c.Messages.New(context.Background(), userParams("hi"))
		require.NoError(t, err, key)
	}
	for _, key := range []string{"key-three", "key-one,key-two"} {
		c := newClient(srv, key)
		_, err := c.Messages.New(context.Background(), userParams("hi"))
		var apiErr *anthropic.Error
		require.ErrorAs(t, err, &apiErr, key)
		require.Equal(t, http.StatusUnauthorized, apiErr.StatusCode, key)
	}
}

func TestSDKStreamMatchesNonStream(t *testing.T) {
	_, srv := newSim(t, Config{Words: 30, EventDelay: time.Millisecond, TTFT: time.Millisecond})
	c := newClient(srv, "any-key-goes")
	p := userParams("Tell me a story")
	want, err := c.Messages.New(context.Background(), p)
	require.NoError(t, err)
	got, err := streamMessage(t, c, p)
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(got.ID, "msg_"))
	require.Equal(t, anthropic.StopReasonEndTurn, got.StopReason)
	require.Len(t, got.Content, 1)
	require.Equal(t, want.Content[0].Text, got.Content[0].Text)
	require.Len(t, strings.Fields(got.Content[0].Text), 30)
	require.Equal(t, want.Usage.InputTokens, got.Usage.InputTokens)
	require.Equal(t, want.Usage.OutputTokens, got.Usage.OutputTokens)
}

func TestSDKToolRoundTrip(t *testing.T) {
	for _, stream := range []bool{false, true} {
		t.Run(map[bool]string{false: "non-stream", true: "stream"}[stream], func(t *testing.T) {
			_, srv := newSim(t, Config{})
			c := newClient(srv, testKey)
			call := func(p anthropic.MessageNewParams) anthropic.Message {
				if stream {
					m, err := streamMessage(t, c, p)
					require.NoError(t, err)
					return m
				}
				m, err := c.Messages.New(context.Background(), p)
				require.NoError(t, err)
				return *m
			}

			p := userParams("Please call GET_TIME, then read_file.", getTimeTool, readFileTool)
			msg := call(p)
			require.Equal(t, anthropic.StopReasonToolUse, msg.StopReason)
			require.Len(t, msg.Content, 3)
			require.Equal(t, "text", msg.Content[0].Type)
			require.Equal(t, "I'll use get_time and read_file.", msg.Content[0].Text)
			tu := msg.Content[1]
			require.Equal(t, "tool_use", tu.Type)
			require.True(t, strings.HasPrefix(tu.ID, "toolu_"))
			require.Equal(t, "get_time", tu.Name)
			require.JSONEq(t, `{"format":"example","offset":1,"opts":{},"precise":true,"ratio":1,"tags":[],"zone":"UTC"}`, string(tu.Input))
			rf := msg.Content[2]
			require.Equal(t, "read_file", rf.Name)
			require.JSONEq(t, `{"path":"example"}`, string(rf.Input))
			require.NotEqual(t, tu.ID, rf.ID)

			p.Messages = append(p.Messages, msg.ToParam(), anthropic.NewUserMessage(
				anthropic.NewToolResultBlock(tu.ID, "12:00 UTC", false),
				anthropic.NewToolResultBlock(rf.ID, "no such file", true),
			))
			final := call(p)
			require.Equal(t, anthropic.StopReasonEndTurn, final.StopReason)
			require.Len(t, final.Content, 1)
			require.Equal(t, `Tool results: [get_time] => "12:00 UTC"; [read_file] => error: "no such file"`, final.Content[0].Text)
		})
	}
}

func TestToolResultBlocksContent(t *testing.T) {
	_, srv := newSim(t, Config{})
	body := `{"model":"m","max_tokens":100,"messages":[
		{"role":"user","content":"hi"},
		{"role":"assistant","content":[{"type":"tool_use","id":"toolu_1","name":"ls","input":{}}]},
		{"role":"user","content":[{"type":"tool_result","tool_use_id":"toolu_1","content":[{"type":"text","text":"a.txt"},{"type":"text","text":"b.txt"}]},
		                          {"type":"tool_result","tool_use_id":"toolu_unknown","content":"x"}]}]}`
	res, out := post(t, srv.URL+"/v1/messages", body, nil)
	require.Equal(t, http.StatusOK, res.StatusCode)
	var msg struct {
		Content []struct{ Type, Text string }
	}
	require.NoError(t, json.Unmarshal(out, &msg))
	require.Equal(t, `Tool results: [ls] => "a.txt\nb.txt"; [toolu_unknown] => "x"`, msg.Content[0].Text)
}

func TestMaxTokens(t *testing.T) {
	_, srv := newSim(t, Config{Words: 50})
	c := newClient(srv, testKey)
	p := userParams("Hello")
	p.MaxTokens = 5
	msg, err := c.Messages.New(context.Background(), p)
	require.NoError(t, err)
	require.Equal(t, anthropic.StopReasonMaxTokens, msg.StopReason)
	require.EqualValues(t, 5, msg.Usage.OutputTokens)
	require.Equal(t, "Simulated answer to:", msg.Content[0].Text)

	s, err := streamMessage(t, c, p)
	require.NoError(t, err)
	require.Equal(t, anthropic.StopReasonMaxTokens, s.StopReason)
	require.Equal(t, msg.Content[0].Text, s.Content[0].Text)
}

func TestCountTokens(t *testing.T) {
	_, srv := newSim(t, Config{})
	c := newClient(srv, testKey)
	p := userParams("count me")
	msg, err := c.Messages.New(context.Background(), p)
	require.NoError(t, err)
	n, err := c.Messages.CountTokens(context.Background(), anthropic.MessageCountTokensParams{
		Model:    p.Model,
		System:   anthropic.MessageCountTokensParamsSystemUnion{OfTextBlockArray: p.System},
		Messages: p.Messages,
	})
	require.NoError(t, err)
	require.Equal(t, msg.Usage.InputTokens, n.InputTokens)
}

func post(t *testing.T, url, body string, hdr map[string]string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	res, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer res.Body.Close()
	out, err := io.ReadAll(res.Body)
	require.NoError(t, err)
	return res, out
}

func requireAPIError(t *testing.T, res *http.Response, body []byte, status int, typ string) string {
	t.Helper()
	require.Equal(t, status, res.StatusCode, string(body))
	require.Equal(t, "application/json", res.Header.Get("Content-Type"))
	rid := res.Header.Get("request-id")
	require.True(t, strings.HasPrefix(rid, "req_"), rid)
	var e struct {
		Type  string `json:"type"`
		Error struct {
			Type    string `json:"type"`
			Message string `json:"message"`
		} `json:"error"`
		RequestID string `json:"request_id"`
	}
	require.NoError(t, json.Unmarshal(body, &e))
	require.Equal(t, "error", e.Type)
	require.Equal(t, typ, e.Error.Type)
	require.NotEmpty(t, e.Error.Message)
	require.Equal(t, rid, e.RequestID)
	return e.Error.Message
}

func TestAuth(t *testing.T) {
	s, srv := newSim(t, Config{APIKey: testKey})
	const ok = `{"model":"m","max_tokens":10,"messages":[{"role":"user","content":"hi"}]}`

	res, body := post(t, srv.URL+"/v1/messages", ok, map[string]string{"x-api-key": "wrong"})
	requireAPIError(t, res, body, http.StatusUnauthorized, "authentication_error")
	res, body = post(t, srv.URL+"/v1/messages", ok, nil)
	requireAPIError(t, res, body, http.StatusUnauthorized, "authentication_error")

	res, _ = post(t, srv.URL+"/v1/messages", ok, map[string]string{"x-api-key": testKey})
	require.Equal(t, http.StatusOK, res.StatusCode)
	require.True(t, strings.HasPrefix(res.Header.Get("request-id"), "req_"))
	res, _ = post(t, srv.URL+"/v1/messages", ok, map[string]string{"Authorization": "Bearer " + testKey})
	require.Equal(t, http.StatusOK, res.StatusCode)

	bad := newClient(srv, "wrong")
	_, err := bad.Messages.New(context.Background(), userParams("hi"))
	var apiErr *anthropic.Error
	require.ErrorAs(t, err, &apiErr)
	require.Equal(t, http.StatusUnauthorized, apiErr.StatusCode)
	require.EqualValues(t, "authentication_error", apiErr.Type())
	require.EqualValues(t, 5, s.Requests())
}

func TestBadRequests(t *testing.T) {
	_, srv := newSim(t, Config{})
	for _, tc := range []struct{ name, body, msg string }{
		{"malformed", `{"model":`, "parsing the body"},
		{"not an object", `[1,2]`, ""},
		{"empty", ``, "empty"},
		{"no model", `{"max_tokens":10,"messages":[{"role":"user","content":"hi"}]}`, "model: Field required"},
		{"no max_tokens", `{"model":"m","messages":[{"role":"user","content":"hi"}]}`, "max_tokens: Field required"},
		{"zero max_tokens", `{"model":"m","max_tokens":0,"messages":[{"role":"user","content":"hi"}]}`, "max_tokens"},
		{"string max_tokens", `{"model":"m","max_tokens":"10","messages":[{"role":"user","content":"hi"}]}`, "max_tokens"},
		{"no messages", `{"model":"m","max_tokens":10}`, "messages: Field required"},
		{"empty messages", `{"model":"m","max_tokens":10,"messages":[]}`, "messages"},
		{"bad role", `{"model":"m","max_tokens":10,"messages":[{"role":"system","content":"hi"}]}`, "messages.0.role"},
		{"bad content", `{"model":"m","max_tokens":10,"messages":[{"role":"user","content":3}]}`, "messages.0.content"},
		{"bad system", `{"model":"m","max_tokens":10,"system":3,"messages":[{"role":"user","content":"hi"}]}`, "system"},
		{"tool without name", `{"model":"m","max_tokens":10,"tools":[{"input_schema":{}}],"messages":[{"role":"user","content":"hi"}]}`, "tools.0.name"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, body := post(t, srv.URL+"/v1/messages", tc.body, nil)
			msg := requireAPIError(t, res, body, http.StatusBadRequest, "invalid_request_error")
			require.Contains(t, msg, tc.msg)
		})
	}

	res, body := post(t, srv.URL+"/v1/other", `{}`, nil)
	requireAPIError(t, res, body, http.StatusNotFound, "not_found_error")

	// Unknown fields are ignored.
	res, body = post(t, srv.URL+"/v1/messages", `{"model":"m","max_tokens":10,"temperature":0.5,"metadata":{"user_id":"u"},
		"messages":[{"role":"user","content":[{"type":"text","text":"hi","cache_control":{"type":"ephemeral"}}]}]}`, nil)
	require.Equal(t, http.StatusOK, res.StatusCode, string(body))
}

func TestFaults(t *testing.T) {
	for _, tc := range []struct {
		name   string
		cfg    Config
		status int
		typ    string
	}{
		{"429", Config{Rate429: 1, RetryAfter: 1500 * time.Millisecond}, http.StatusTooManyRequests, "rate_limit_error"},
		{"529", Config{Rate529: 1}, 529, "overloaded_error"},
		{"500", Config{Rate500: 1}, http.StatusInternalServerError, "api_error"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, srv := newSim(t, tc.cfg)
			c := newClient(srv, testKey)
			_, err := c.Messages.New(context.Background(), userParams("hi"))
			var apiErr *anthropic.Error
			require.ErrorAs(t, err, &apiErr)
			require.Equal(t, tc.status, apiErr.StatusCode)
			require.EqualValues(t, tc.typ, apiErr.Type())
			require.True(t, strings.HasPrefix(apiErr.RequestID, "req_"), apiErr.RequestID)
			if tc.status == http.StatusTooManyRequests {
				require.Equal(t, "2", apiErr.Response.Header.Get("retry-after"))
				require.Equal(t, "1500", apiErr.Response.Header.Get("retry-after-ms"))
			}
			// Streams fail before the first event, with the same status.
			_, err = streamMessage(t, c, userParams("hi"))
			require.ErrorAs(t, err, &apiErr)
			require.Equal(t, tc.status, apiErr.StatusCode)

			res, body := post(t, srv.URL+"/v1/messages", `{"model":"m","max_tokens":10,"messages":[{"role":"user","content":"hi"}]}`, nil)
			requireAPIError(t, res, body, tc.status, tc.typ)
			require.EqualValues(t, 3, s.Requests())
		})
	}

	t.Run("429 default retry-after", func(t *testing.T) {
		_, srv := newSim(t, Config{Rate429: 1})
		res, _ := post(t, srv.URL+"/v1/messages", `{"model":"m","max_tokens":10,"messages":[{"role":"user","content":"hi"}]}`, nil)
		require.Equal(t, http.StatusTooManyRequests, res.StatusCode)
		require.Equal(t, "1", res.Header.Get("retry-after"))
		require.Equal(t, "1000", res.Header.Get("retry-after-ms"))
	})

	t.Run("SDK retries 529", func(t *testing.T) {
		s, srv := newSim(t, Config{Rate529: 1})
		c := anthropic.NewClient(option.WithoutEnvironmentDefaults(), option.WithBaseURL(srv.URL),
			option.WithAPIKey(testKey), option.WithMaxRetries(2))
		_, err := c.Messages.New(context.Background(), userParams("hi"))
		require.Error(t, err)
		require.EqualValues(t, 3, s.Requests())
	})

	t.Run("cut", func(t *testing.T) {
		s, srv := newSim(t, Config{RateCut: 1, Words: 40})
		c := newClient(srv, testKey)
		stream := c.Messages.NewStreaming(context.Background(), userParams("hi"))
		var msg anthropic.Message
		types := []string{}
		for stream.Next() {
			ev := stream.Current()
			types = append(types, ev.Type)
			require.NoError(t, msg.Accumulate(ev))
		}
		require.Error(t, stream.Err())
		require.NoError(t, stream.Close())
		require.Equal(t, []string{"message_start", "content_block_start", "content_block_delta"}, types[:3]) // the SDK drops pings
		require.Contains(t, types, "content_block_delta")
		require.NotContains(t, types, "message_stop")
		require.NotContains(t, types, "message_delta")
		require.NotEmpty(t, msg.Content[0].Text)

		_, err := c.Messages.New(context.Background(), userParams("hi"))
		require.Error(t, err)
		var apiErr *anthropic.Error
		require.False(t, errors.As(err, &apiErr), "a cut is a transport error, not an API error")
		require.EqualValues(t, 2, s.Requests())
	})
}

func TestStreamWireFormat(t *testing.T) {
	_, srv := newSim(t, Config{Words: 4})
	body := `{"model":"m","max_tokens":100,"stream":true,"tools":[{"name":"ls","input_schema":{"type":"object","properties":{"dir":{"type":"string"}}}}],
		"messages":[{"role":"user","content":"run ls now"}]}`
	res, out := post(t, srv.URL+"/v1/messages", body, nil)
	require.Equal(t, http.StatusOK, res.StatusCode)
	require.Equal(t, "text/event-stream; charset=utf-8", res.Header.Get("Content-Type"))
	require.True(t, strings.HasPrefix(res.Header.Get("request-id"), "req_"))
	var types []string
	var partial string
	for _, ev := range strings.Split(strings.TrimSuffix(string(out), "\n\n"), "\n\n") {
		lines := strings.Split(ev, "\n")
		require.Len(t, lines, 2, ev)
		typ := strings.TrimPrefix(lines[0], "event: ")
		data := strings.TrimPrefix(lines[1], "data: ")
		var v struct {
			Type  string `json:"type"`
			Delta struct {
				Type        string `json:"type"`
				PartialJSON string `json:"partial_json"`
			} `json:"delta"`
		}
		require.NoError(t, json.Unmarshal([]byte(data), &v), data)
		require.Equal(t, typ, v.Type)
		types = append(types, typ)
		if v.Delta.Type == "input_json_delta" {
			partial += v.Delta.PartialJSON
		}
	}
	require.JSONEq(t, `{"dir":"example"}`, partial)
	require.Equal(t, []string{
		"message_start", "ping",
		"content_block_start", "content_block_delta", "content_block_delta", "content_block_delta", "content_block_stop",
		"content_block_start", "content_block_delta", "content_block_delta", "content_block_delta", "content_block_stop",
		"message_delta", "message_stop",
	}, types)
}

func TestLatency(t *testing.T) {
	_, srv := newSim(t, Config{Latency: 40 * time.Millisecond, LatencyJitter: 10 * time.Millisecond, Seed: 1})
	c := newClient(srv, testKey)
	start := time.Now()
	_, err := c.Messages.New(context.Background(), userParams("hi"))
	require.NoError(t, err)
	require.GreaterOrEqual(t, time.Since(start), 40*time.Millisecond)
}

func TestParseFlags(t *testing.T) {
	addr, cfg, err := ParseFlags(nil)
	require.NoError(t, err)
	require.Equal(t, "127.0.0.1:8090", addr)
	require.Equal(t, Config{RetryAfter: time.Second, Words: 12}, cfg)

	addr, cfg, err = ParseFlags([]string{"-addr", ":9000", "-api-key", "k", "-latency", "5ms", "-jitter", "2ms",
		"-tail-latency", "1s", "-tail-rate", "0.01", "-ttft", "3ms", "-event-delay", "1ms", "-rate-429", "0.1",
		"-rate-529", "0.2", "-rate-500", "0.3", "-rate-cut", "0.4", "-retry-after", "2s", "-words", "7", "-seed", "42"})
	require.NoError(t, err)
	require.Equal(t, ":9000", addr)
	require.Equal(t, Config{APIKey: "k", Latency: 5 * time.Millisecond, LatencyJitter: 2 * time.Millisecond,
		TailLatency: time.Second, TailRate: 0.01, TTFT: 3 * time.Millisecond, EventDelay: time.Millisecond,
		Rate429: 0.1, Rate529: 0.2, Rate500: 0.3, RateCut: 0.4, RetryAfter: 2 * time.Second, Words: 7, Seed: 42}, cfg)

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-rate-429", "1.5"}, "-rate-429 must be in [0,1]"},
		{[]string{"-rate-cut", "-0.1"}, "-rate-cut must be in [0,1]"},
		{[]string{"-tail-rate", "2"}, "-tail-rate must be in [0,1]"},
		{[]string{"-rate-429", "0.5", "-rate-500", "0.6"}, "-rate-429 + -rate-529 + -rate-500 + -rate-cut must be <= 1"},
		{[]string{"-latency", "-1s"}, "-latency must be >= 0"},
		{[]string{"-event-delay", "-1ms"}, "-event-delay must be >= 0"},
		{[]string{"-words", "-3"}, "-words must be >= 0"},
		{[]string{"-latency", "soon"}, "-latency"},
		{[]string{"-bogus"}, "bogus"},
		{[]string{"extra"}, "unexpected argument"},
	} {
		_, _, err := ParseFlags(tc.args)
		require.ErrorContains(t, err, tc.want, tc.args)
	}
	_, _, err = ParseFlags([]string{"-h"})
	require.ErrorIs(t, err, flag.ErrHelp)
	require.ErrorContains(t, err, "-rate-cut")

	require.ErrorContains(t, Config{Rate500: 2}.Validate(), "Rate500 must be in [0,1]")
	require.NoError(t, Config{}.Validate())
}

func TestServe(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, ln, Config{}, nil) }()
	res, _ := post(t, "http://"+ln.Addr().String()+"/v1/messages",
		`{"model":"m","max_tokens":10,"messages":[{"role":"user","content":"hi"}]}`, nil)
	require.Equal(t, http.StatusOK, res.StatusCode)
	cancel()
	require.NoError(t, <-done)

	require.ErrorContains(t, Run(context.Background(), "127.0.0.1:0", Config{Rate429: 3}, nil), "Rate429")
}

func TestInputTokensDeterministic(t *testing.T) {
	var r request
	require.Empty(t, r.parse([]byte(`{"model":"m","max_tokens":1,"messages":[{"role":"user","content":"abcdefgh"}]}`), true))
	require.Equal(t, 3, r.inputTokens()) // `"abcdefgh"` is 10 bytes
}

func TestAppendString(t *testing.T) {
	for _, s := range []string{"plain", "quote\" back\\slash", "ctl\x00\x1f\n\r\t", "ünïcödé ✓", "sep\u2028\u2029", "<&>"} {
		got := appendString(nil, s)
		var back string
		require.NoError(t, json.Unmarshal(got, &back), string(got))
		require.Equal(t, s, back)
	}
	require.Equal(t, `"\ufffd"`, string(appendString(nil, "\xff")))
}
