package reqscan

import (
	"encoding/json"
	"strconv"
	"testing"
)

// FuzzScan is the gateway's request reader: Scan reads model, stream and
// max_tokens from a client's body without decoding the rest. The oracle
// is encoding/json reading the same top-level keys exactly (as the
// upstream would): whenever Scan accepts a body, it reads the same model,
// stream and max_tokens, and the model's byte range holds the model.
// It must never panic (its skip functions index the body directly).
// Seeds: testdata/fuzz/FuzzScan.
func FuzzScan(f *testing.F) {
	f.Add([]byte(`{"model":"claude-sonnet-4-5","max_tokens":5,"stream":true,"messages":[{"role":"user","content":"x"}]}`))
	f.Add([]byte(`{"mod\u0065l":"a","model":"b"}`))
	f.Add([]byte(` { "messages" : [ { "a" : "}\"]" } ] , "max_tokens" : -9 } `))
	f.Add([]byte(`[1,2]`))
	f.Add([]byte(`{"model":"\u00e9\ud83d\ude00","stream":false,"max_tokens":1e3}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		got, err := Scan(body)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("error without a message")
			}
			return
		}
		var m map[string]json.RawMessage
		if err := json.Unmarshal(body, &m); err != nil {
			t.Fatalf("scan accepted %q, which is not a JSON object: %v", body, err)
		}
		if raw, ok := m["model"]; ok {
			var want string
			if err := json.Unmarshal(raw, &want); err != nil {
				t.Fatalf("scan accepted a model that is not a string: %q", body)
			}
			if got.Model != want {
				t.Fatalf("model %q, upstream reads %q (body %q)", got.Model, want, body)
			}
			var inRange string
			if err := json.Unmarshal(body[got.ModelStart:got.ModelEnd], &inRange); err != nil || inRange != want {
				t.Fatalf("model range [%d:%d] holds %q, not %q", got.ModelStart, got.ModelEnd, body[got.ModelStart:got.ModelEnd], want)
			}
		} else if got.Model != "" {
			t.Fatalf("model %q read from a body without one: %q", got.Model, body)
		}
		if want := string(m["stream"]) == "true"; got.Stream != want {
			t.Fatalf("stream %v, upstream reads %s (body %q)", got.Stream, m["stream"], body)
		}
		if raw, ok := m["max_tokens"]; ok {
			n, err := strconv.ParseInt(string(raw), 10, 64)
			if err != nil || n != got.MaxTokens {
				t.Fatalf("max_tokens %d, upstream reads %s (body %q)", got.MaxTokens, raw, body)
			}
		}
	})
}
