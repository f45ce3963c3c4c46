package anthropic

import "testing"

// The fast path takes the API's own form of a text delta and nothing else.
func TestParseTextDelta(t *testing.T) {
	for _, c := range []struct {
		data  string
		index int64
		text  string
		ok    bool
	}{
		{`{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hello"}}`, 0, "Hello", true},
		{`{"type":"content_block_delta","index":12,"delta":{"type":"text_delta","text":"a\nb \"q\" é"}}` + "\n", 12, "a\nb \"q\" é", true},
		{`{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":""}}`, 0, "", true},
		// Everything else goes to the SDK.
		{`{"type":"content_block_delta","index":01,"delta":{"type":"text_delta","text":"x"}}`, 0, "", false},
		{`{"type":"content_block_delta","index":-1,"delta":{"type":"text_delta","text":"x"}}`, 0, "", false},
		{`{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"\u00e9"}}`, 0, "", false},
		{`{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"x","y":1}}`, 0, "", false},
		{`{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"a"},"text":"b"}}`, 0, "", false},
		{`{"type":"content_block_delta","index":0,"delta":{"type":"input_json_delta","partial_json":"{"}}`, 0, "", false},
		{`{"type":"content_block_delta", "index":0,"delta":{"type":"text_delta","text":"x"}}`, 0, "", false},
		{`{"Type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"x"}}`, 0, "", false},
		{"{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"\xff\"}}", 0, "", false},
	} {
		index, text, ok := parseTextDelta([]byte(c.data))
		if ok != c.ok || index != c.index || text != c.text {
			t.Errorf("parseTextDelta(%s) = %d, %q, %v; want %d, %q, %v", c.data, index, text, ok, c.index, c.text, c.ok)
		}
	}
}
