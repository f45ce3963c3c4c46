// Package reqscan is the gateway's request reader: it reads model, stream
// and max_tokens from a Messages API request body without decoding the
// rest. It is a package of its own so that its fuzz target (FuzzScan)
// links only it (see docs/reliability.md, "Fuzzing").
package reqscan

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
)

// Fields are what the gateway reads of a request body; everything else is
// forwarded unread.
type Fields struct {
	Model                string
	ModelStart, ModelEnd int // the model's JSON string in the body, quotes included
	Stream               bool
	MaxTokens            int64
}

var (
	errNotJSON   = errors.New("the request body is not valid JSON")
	errNotObject = errors.New("the request body must be a JSON object")
)

// Scan reads model, stream and max_tokens from the top level of body
// without decoding the rest (messages, tools, images stay bytes).
func Scan(body []byte) (Fields, error) {
	var f Fields
	if !json.Valid(body) {
		return f, errNotJSON
	}
	i := skipWS(body, 0)
	if body[i] != '{' {
		return f, errNotObject
	}
	i = skipWS(body, i+1)
	var seen [3]bool // model, stream, max_tokens
	for body[i] != '}' {
		kEnd := skipString(body, i)
		key := body[i+1 : kEnd-1]
		if bytes.IndexByte(key, '\\') >= 0 {
			// An escaped key ("mod\u0065l") is the same key to the
			// upstream's parser: compare it decoded.
			var k string
			if err := json.Unmarshal(body[i:kEnd], &k); err == nil {
				key = []byte(k)
			}
		}
		i = skipWS(body, kEnd) // at ':'
		vStart := skipWS(body, i+1)
		vEnd := skipValue(body, vStart)
		v := body[vStart:vEnd]
		if n := fieldIndex(key); n >= 0 {
			// A field read twice could be read one way here and the
			// other way upstream (which model is called, how long the
			// answer may be): refused.
			if seen[n] {
				return f, fmt.Errorf("%s: duplicate field", key)
			}
			seen[n] = true
		}
		switch string(key) {
		case "model":
			if v[0] != '"' {
				return f, errors.New("model: must be a string")
			}
			if err := json.Unmarshal(v, &f.Model); err != nil {
				return f, errors.New("model: must be a string")
			}
			f.ModelStart, f.ModelEnd = vStart, vEnd
		case "stream":
			f.Stream = string(v) == "true"
		case "max_tokens":
			n, err := strconv.ParseInt(string(v), 10, 64)
			if err != nil {
				return f, errors.New("max_tokens: must be an integer")
			}
			f.MaxTokens = n
		}
		i = skipWS(body, vEnd)
		if body[i] == ',' {
			i = skipWS(body, i+1)
		}
	}
	return f, nil
}

// fieldIndex is the index in Scan's seen of a field the gateway reads, or
// -1.
func fieldIndex(key []byte) int {
	switch string(key) {
	case "model":
		return 0
	case "stream":
		return 1
	case "max_tokens":
		return 2
	}
	return -1
}

// The skip functions assume valid JSON (Scan checks it first).

func skipWS(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// skipString returns the index after the string starting at b[i] ('"').
func skipString(b []byte, i int) int {
	for i++; i < len(b); i++ {
		switch b[i] {
		case '\\':
			i++
		case '"':
			return i + 1
		}
	}
	return i
}

// skipValue returns the index after the value starting at b[i].
func skipValue(b []byte, i int) int {
	switch b[i] {
	case '"':
		return skipString(b, i)
	case '{', '[':
		depth := 0
		for ; i < len(b); i++ {
			switch b[i] {
			case '"':
				i = skipString(b, i) - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1
				}
			}
		}
		return i
	}
	for i < len(b) && b[i] != ',' && b[i] != '}' && b[i] != ']' && b[i] != ' ' && b[i] != '\t' && b[i] != '\n' && b[i] != '\r' {
		i++
	}
	return i
}
