package tool

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
)

// Schema is the subset of JSON Schema agentd checks tool output and config
// against: type (a name or a list of names), required, properties, items and
// enum. Every other keyword is accepted and ignored.
type Schema struct {
	Type       schemaType         `json:"type,omitempty"`
	Required   []string           `json:"required,omitempty"`
	Properties map[string]*Schema `json:"properties,omitempty"`
	Items      *Schema            `json:"items,omitempty"`
	Enum       []json.RawMessage  `json:"enum,omitempty"`
}

type schemaType []string

func (t *schemaType) UnmarshalJSON(b []byte) error {
	var one string
	if err := json.Unmarshal(b, &one); err == nil {
		*t = schemaType{one}
		return nil
	}
	var many []string
	if err := json.Unmarshal(b, &many); err != nil {
		return errors.New(`"type" must be a string or a list of strings`)
	}
	*t = many
	return nil
}

var schemaTypes = []string{"object", "array", "string", "number", "integer", "boolean", "null"}

// ParseSchema parses a JSON schema and checks its type names.
func ParseSchema(raw []byte) (*Schema, error) {
	var s Schema
	if err := json.Unmarshal(raw, &s); err != nil {
		return nil, fmt.Errorf("invalid JSON schema: %w", err)
	}
	if err := s.check("$"); err != nil {
		return nil, err
	}
	return &s, nil
}

func (s *Schema) check(path string) error {
	if s == nil {
		return nil
	}
	for _, t := range s.Type {
		if !slices.Contains(schemaTypes, t) {
			return fmt.Errorf("invalid JSON schema: %s: unknown type %q", path, t)
		}
	}
	for name, p := range s.Properties {
		if err := p.check(path + "." + name); err != nil {
			return err
		}
	}
	return s.Items.check(path + "[]")
}

// Validate checks the JSON document data against s.
func (s *Schema) Validate(data []byte) error {
	var v any
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil {
		return fmt.Errorf("not valid JSON: %w", err)
	}
	// dec.More is false before a stray '}' or ']': only the end of the
	// input means nothing follows the value ("0}" is not JSON).
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errors.New("not valid JSON: trailing data")
	}
	return s.validate(v, "$")
}

// ValidateValue checks a decoded JSON value (encoding/json types; numbers
// as float64 or json.Number) against s.
func (s *Schema) ValidateValue(v any) error { return s.validate(v, "$") }

func (s *Schema) validate(v any, path string) error {
	if s == nil {
		return nil
	}
	if len(s.Type) > 0 {
		ok := false
		for _, t := range s.Type {
			if hasType(v, t) {
				ok = true
				break
			}
		}
		if !ok {
			return fmt.Errorf("%s: want %s, got %s", path, strings.Join(s.Type, " or "), typeName(v))
		}
	}
	if len(s.Enum) > 0 {
		got, _ := json.Marshal(v)
		found := false
		for _, e := range s.Enum {
			var ev any
			if json.Unmarshal(e, &ev) == nil {
				want, _ := json.Marshal(ev)
				if bytes.Equal(got, want) {
					found = true
					break
				}
			}
		}
		if !found {
			return fmt.Errorf("%s: value not in enum", path)
		}
	}
	switch x := v.(type) {
	case map[string]any:
		for _, r := range s.Required {
			if _, ok := x[r]; !ok {
				return fmt.Errorf("%s: missing required property %q", path, r)
			}
		}
		for name, p := range s.Properties {
			if pv, ok := x[name]; ok {
				if err := p.validate(pv, path+"."+name); err != nil {
					return err
				}
			}
		}
	case []any:
		if s.Items != nil {
			for i, e := range x {
				if err := s.Items.validate(e, fmt.Sprintf("%s[%d]", path, i)); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

func hasType(v any, t string) bool {
	switch t {
	case "object":
		_, ok := v.(map[string]any)
		return ok
	case "array":
		_, ok := v.([]any)
		return ok
	case "string":
		_, ok := v.(string)
		return ok
	case "boolean":
		_, ok := v.(bool)
		return ok
	case "null":
		return v == nil
	case "number":
		return isNumber(v)
	case "integer":
		switch n := v.(type) {
		case json.Number:
			if _, err := n.Int64(); err == nil {
				return true
			}
			f, err := n.Float64()
			return err == nil && f == math.Trunc(f)
		case float64:
			return n == math.Trunc(n)
		}
	}
	return false
}

func isNumber(v any) bool {
	switch v.(type) {
	case json.Number, float64, int, int64:
		return true
	}
	return false
}

func typeName(v any) string {
	switch v.(type) {
	case map[string]any:
		return "object"
	case []any:
		return "array"
	case string:
		return "string"
	case bool:
		return "boolean"
	case nil:
		return "null"
	}
	if isNumber(v) {
		return "number"
	}
	return fmt.Sprintf("%T", v)
}
