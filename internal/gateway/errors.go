package gateway

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Paths the gateway serves; errors on them are written in Anthropic's shape.
const (
	PathMessages    = "/v1/messages"
	PathCountTokens = "/v1/messages/count_tokens"
)

// IsGatewayPath reports whether path is one of the gateway's, so that
// errors on it (authentication, rate limits, admission) are written with
// WriteError, in the shape the Anthropic SDKs parse.
func IsGatewayPath(path string) bool {
	return path == PathMessages || path == PathCountTokens || strings.HasPrefix(path, PathMessages+"/")
}

// Refusal is an error the gateway answers itself (the call never went
// upstream): a budget, a rate limit, a model not allowed. Adapters of the
// budget and rate-limit layers return it.
type Refusal struct {
	Status int
	// Type is an Anthropic error type (rate_limit_error, ...); empty: the
	// type of Status.
	Type       string
	Message    string
	RetryAfter time.Duration
}

func (r *Refusal) Error() string { return r.Message }

// ErrorType is the Anthropic error type of an HTTP status.
func ErrorType(status int) string {
	switch {
	case status == http.StatusBadRequest, status == http.StatusMethodNotAllowed, status == http.StatusConflict:
		return "invalid_request_error"
	case status == http.StatusUnauthorized:
		return "authentication_error"
	case status == http.StatusPaymentRequired:
		return "billing_error"
	case status == http.StatusForbidden:
		return "permission_error"
	case status == http.StatusNotFound:
		return "not_found_error"
	case status == http.StatusRequestEntityTooLarge:
		return "request_too_large"
	case status == http.StatusTooManyRequests:
		return "rate_limit_error"
	case status == http.StatusGatewayTimeout:
		return "timeout_error"
	case status == http.StatusServiceUnavailable, status == 529:
		return "overloaded_error"
	case status >= 400 && status < 500:
		return "invalid_request_error"
	}
	return "api_error"
}

type errorBody struct {
	Type      string      `json:"type"`
	Error     errorDetail `json:"error"`
	RequestID string      `json:"request_id,omitempty"`
}

type errorDetail struct {
	Type    string `json:"type"`
	Message string `json:"message"`
}

// WriteError writes an error in the Anthropic API's shape:
// {"type":"error","error":{"type":...,"message":...},"request_id":...},
// with retry-after (seconds) when retryAfter > 0. typ "" is the type of
// status.
func WriteError(w http.ResponseWriter, status int, typ, message, requestID string, retryAfter time.Duration) {
	if typ == "" {
		typ = ErrorType(status)
	}
	h := w.Header()
	if retryAfter > 0 {
		h.Set("Retry-After", strconv.FormatInt(int64((retryAfter+time.Second-1)/time.Second), 10))
	}
	h.Set("Content-Type", "application/json")
	w.WriteHeader(status)
	b, _ := json.Marshal(errorBody{Type: "error", Error: errorDetail{Type: typ, Message: message}, RequestID: requestID})
	_, _ = w.Write(b)
}
