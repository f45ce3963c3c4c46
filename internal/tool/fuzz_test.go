package tool

import (
	"encoding/json"
	"testing"
)

// FuzzSchemaValidate is the validation of a tool's output (MCP structured
// content, an HTTP tool's answer, a guarded tool's output) against its
// declared schema, both from outside: the schema comes from the MCP
// server's tools/list or the config, the document from the tool. It must
// never panic, answer the same twice, and accept only valid JSON.
// Seeds: testdata/fuzz/FuzzSchemaValidate.
func FuzzSchemaValidate(f *testing.F) {
	f.Add([]byte(`{"type":"object","required":["a"],"properties":{"a":{"type":"integer"}}}`), []byte(`{"a":1}`))
	f.Add([]byte(`{"type":["string","null"],"enum":["x",null]}`), []byte(`null`))
	f.Add([]byte(`{"type":"array","items":{"type":"number"}}`), []byte(`[1,2.5,-3e10]`))
	f.Add([]byte(`{"type":"integer"}`), []byte(`1e400`))
	f.Add([]byte(`{"properties":{"a":{"items":{"enum":[{"x":[1]}]}}}}`), []byte(`{"a":[{"x":[1]}]} trailing`))
	f.Fuzz(func(t *testing.T, schema, doc []byte) {
		s, err := ParseSchema(schema)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("schema error without a message")
			}
			return
		}
		err1 := s.Validate(doc)
		err2 := s.Validate(doc)
		if (err1 == nil) != (err2 == nil) {
			t.Fatalf("validation is not deterministic: %v vs %v", err1, err2)
		}
		if err1 == nil && !json.Valid(doc) {
			t.Fatalf("accepted invalid JSON %q against %s", doc, schema)
		}
		if err1 != nil && err1.Error() == "" {
			t.Fatal("validation error without a message")
		}
	})
}
