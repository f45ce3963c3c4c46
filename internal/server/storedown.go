package server

import (
	"net/http"

	"github.com/agentd/agentd/internal/llm"
	"github.com/agentd/agentd/internal/store"
)

// storeUnavailable answers a full store disk (507) and an error that says
// the store cannot be reached (PostgreSQL restarting, failing over,
// refusing connections; SQLite's file failing): 503 with Retry-After, not
// a 500. The request did nothing; the client may retry it, and a load
// balancer's retry or health check moves it elsewhere. What counts is the
// backend's own classification (store.IsUnavailable, store.IsFull), the
// one its circuit breaker counts failures by. Found by `agentd chaos
// r3-postgres` and `agentd chaos disk`: both answered 500 internal_error.
func storeUnavailable(err error) *Error {
	if _, ok := llm.AsError(err); ok {
		return nil // the model provider's network, not the store's
	}
	if store.IsFull(err) {
		return &Error{Status: http.StatusInsufficientStorage, Type: "store_full",
			Message: "the store's disk is full: the request was not completed; retry once space is freed", RetryAfter: 30}
	}
	if !store.IsUnavailable(err) {
		return nil
	}
	return &Error{Status: http.StatusServiceUnavailable, Type: "store_unavailable",
		Message: "the store is unavailable; retry shortly", RetryAfter: 1}
}
