// Package managed is agentd's Claude Managed Agents face: agents (with
// versions), environments and sessions as the official SDKs
// (anthropic-sdk-go's client.Beta.Agents / Environments / Sessions, beta
// header managed-agents-2026-04-01) send and read them, kept in agentd's
// store (store.Managed). A session is an agentd conversation; its events
// (user.message → a durable run, requires_action → a paused run, ...) are
// translated from agentd's run events (events.go).
//
// This package holds the domain: request validation, defaults, the wire
// shapes and the translation. internal/server only decodes bodies, calls a
// Service and writes answers and errors.
package managed

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
)

// BetaHeader is the anthropic-beta value of the Managed Agents API.
const BetaHeader = "managed-agents-2026-04-01"

// IsBeta reports whether an anthropic-beta header value (possibly a comma
// separated list, possibly repeated) asks for the Managed Agents API.
func IsBeta(values []string) bool {
	for _, v := range values {
		for _, b := range strings.Split(v, ",") {
			if strings.HasPrefix(strings.TrimSpace(b), "managed-agents-") {
				return true
			}
		}
	}
	return false
}

// InvalidError is a request the API refuses (400 invalid_request_error).
type InvalidError struct{ Message string }

func (e *InvalidError) Error() string { return e.Message }

func invalid(format string, args ...any) error {
	return &InvalidError{Message: fmt.Sprintf(format, args...)}
}

// unsupported refuses a request that needs a Managed Agents feature agentd
// does not have: never silently ignored.
func unsupported(field, what string) error {
	return &InvalidError{Message: fmt.Sprintf("%s: %s is not supported by this server (agentd, self-hosted Managed Agents); see docs/managed-agents.md", field, what)}
}

// AsInvalid returns the InvalidError in err's chain.
func AsInvalid(err error) (*InvalidError, bool) {
	var e *InvalidError
	ok := errors.As(err, &e)
	return e, ok
}

// ErrVersionMismatch: an update named a version that is not the agent's
// current one (409).
var ErrVersionMismatch = errors.New("version mismatch")

// newID returns prefix_ + 26 lower-case characters, time-ordered (UUIDv7).
func newID(prefix string) string {
	u, err := uuid.NewV7()
	if err != nil {
		var b [16]byte
		_, _ = rand.Read(b[:])
		u = uuid.UUID(b)
	}
	return prefix + "_" + strings.ReplaceAll(u.String(), "-", "")
}

// timestamp formats t as RFC 3339 (UTC, microseconds), or nil when zero.
func timestamp(t time.Time) *string {
	if t.IsZero() {
		return nil
	}
	s := t.UTC().Format(time.RFC3339Nano)
	return &s
}

func mustTimestamp(t time.Time) string {
	if p := timestamp(t); p != nil {
		return *p
	}
	return ""
}

// decodeStrict decodes raw into v, refusing unknown fields, naming field
// in errors.
func decodeStrict(field string, raw json.RawMessage, v any) error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return invalid("%s: %s", field, strings.TrimPrefix(err.Error(), "json: "))
	}
	return nil
}

// isNull reports whether raw is the JSON null (present, cleared).
func isNull(raw json.RawMessage) bool { return bytes.Equal(bytes.TrimSpace(raw), []byte("null")) }

// present reports whether a field was sent at all.
func present(raw json.RawMessage) bool { return len(raw) > 0 }

// Metadata limits (the API's).
const (
	maxMetadataPairs = 16
	maxMetadataKey   = 64
	maxMetadataValue = 512
)

func checkMetadata(field string, m map[string]string) error {
	if len(m) > maxMetadataPairs {
		return invalid("%s: at most %d pairs, got %d", field, maxMetadataPairs, len(m))
	}
	for k, v := range m {
		if k == "" || len(k) > maxMetadataKey {
			return invalid("%s: keys are 1 to %d characters, got %q", field, maxMetadataKey, k)
		}
		if len(v) > maxMetadataValue {
			return invalid("%s.%s: values are at most %d characters", field, k, maxMetadataValue)
		}
	}
	return nil
}

// patchMetadata applies a metadata patch: a string upserts, null (or, for
// environments, "") deletes.
func patchMetadata(field string, cur map[string]string, patch map[string]*string, emptyDeletes bool) (map[string]string, error) {
	out := make(map[string]string, len(cur)+len(patch))
	for k, v := range cur {
		out[k] = v
	}
	for k, v := range patch {
		if v == nil || (emptyDeletes && *v == "") {
			delete(out, k)
			continue
		}
		out[k] = *v
	}
	return out, checkMetadata(field, out)
}

// Page is a list answer: {"data": [...], "next_page": cursor|null}. The
// SDK's ListAutoPaging asks for the next page with ?page=next_page until
// it is null.
type Page[T any] struct {
	Data     []T     `json:"data"`
	NextPage *string `json:"next_page"`
}

// Bidirectional pages also carry prev_page (sessions).
type BidirectionalPage[T any] struct {
	Data     []T     `json:"data"`
	NextPage *string `json:"next_page"`
	PrevPage *string `json:"prev_page"`
}
