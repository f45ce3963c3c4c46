package sim

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
)

const (
	benchBody = `{"model":"claude-sonnet-4-5","max_tokens":1024,"system":"You are a benchmark.",
		"tools":[{"name":"get_time","description":"time","input_schema":{"type":"object","properties":{"zone":{"type":"string"}}}}],
		"messages":[{"role":"user","content":"Hello there, please answer this benchmark question."}]}`
	benchStreamBody = `{"model":"claude-sonnet-4-5","max_tokens":1024,"stream":true,"system":"You are a benchmark.",
		"tools":[{"name":"get_time","description":"time","input_schema":{"type":"object","properties":{"zone":{"type":"string"}}}}],
		"messages":[{"role":"user","content":"Hello there, please answer this benchmark question."}]}`
)

func benchHTTP(b *testing.B, body string) {
	srv := httptest.NewServer(New(Config{}, nil))
	defer srv.Close()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16}}
	payload := []byte(body)
	url := srv.URL + "/v1/messages"
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(payload))
		req.Header.Set("Content-Type", "application/json")
		res, err := client.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, res.Body)
		_ = res.Body.Close()
		if res.StatusCode != http.StatusOK {
			b.Fatal(res.Status)
		}
	}
}

// BenchmarkNonStream measures a full non-stream round trip over loopback,
// client included.
func BenchmarkNonStream(b *testing.B) { benchHTTP(b, benchBody) }

// BenchmarkStream measures a full stream round trip (12 words, 17 events)
// over loopback, client included.
func BenchmarkStream(b *testing.B) { benchHTTP(b, benchStreamBody) }

type discardRW struct{ h http.Header }

func (d *discardRW) Header() http.Header         { return d.h }
func (d *discardRW) Write(p []byte) (int, error) { return len(p), nil }
func (d *discardRW) WriteHeader(int)             {}
func (d *discardRW) Flush()                      {}

func benchHandler(b *testing.B, body string) {
	s := New(Config{}, nil)
	payload := []byte(body)
	rd := bytes.NewReader(payload)
	req := httptest.NewRequest(http.MethodPost, "/v1/messages", rd)
	w := &discardRW{h: http.Header{}}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		rd.Reset(payload)
		req.Body = io.NopCloser(rd)
		clear(w.h)
		s.ServeHTTP(w, req)
	}
}

// BenchmarkHandlerNonStream measures the handler alone (no network, no client).
func BenchmarkHandlerNonStream(b *testing.B) { benchHandler(b, benchBody) }

// BenchmarkHandlerStream measures the streaming handler alone.
func BenchmarkHandlerStream(b *testing.B) { benchHandler(b, benchStreamBody) }

// BenchmarkHandlerLongConversation measures the handler on a 200-message,
// ~200 KB conversation, the shape of a long agent loop.
func BenchmarkHandlerLongConversation(b *testing.B) {
	var sb bytes.Buffer
	sb.WriteString(`{"model":"claude-sonnet-4-5","max_tokens":1024,"messages":[`)
	filler := bytes.Repeat([]byte("some earlier context words "), 37)
	for i := range 200 {
		if i > 0 {
			sb.WriteByte(',')
		}
		role := "user"
		if i%2 == 1 {
			role = "assistant"
		}
		sb.WriteString(`{"role":"` + role + `","content":[{"type":"text","text":"`)
		sb.Write(filler)
		sb.WriteString(`"}]}`)
	}
	sb.WriteString(`,{"role":"user","content":"and now the question"}]}`)
	benchHandler(b, sb.String())
}
