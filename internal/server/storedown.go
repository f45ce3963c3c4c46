package server

import (
	"errors"
	"io"
	"net"
	"net/http"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/agentd/agentd/internal/llm"
)

// storeUnavailable answers a full SQLite disk (507) and an error that says
// the store cannot be reached
// (PostgreSQL restarting, failing over, refusing connections): 503 with
// Retry-After, not a 500. The request did nothing; the client may retry
// it, and a load balancer's retry or health check moves it elsewhere.
// Found by `agentd chaos r3-postgres`: until /readyz had seen the outage,
// submissions answered 500 internal_error.
func storeUnavailable(err error) *Error {
	if isStoreFull(err) {
		return &Error{Status: http.StatusInsufficientStorage, Type: "store_full",
			Message: "the store's disk is full: the request was not completed; retry once space is freed", RetryAfter: 30}
	}
	if !isStoreDown(err) {
		return nil
	}
	return &Error{Status: http.StatusServiceUnavailable, Type: "store_unavailable",
		Message: "the store is unavailable; retry shortly", RetryAfter: 1}
}

// isStoreDown reports a connection-level store error: no connection could
// be made, the server ended the connection (SQLSTATE class 08, connection
// exception; 57P01-57P03, shutdown, crash, not yet accepting), the
// network failed under it, or the connection ended mid-answer.
func isStoreDown(err error) bool {
	if _, ok := llm.AsError(err); ok {
		return false // the model provider's network, not the store's
	}
	var ce *pgconn.ConnectError
	if errors.As(err, &ce) {
		return true
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return strings.HasPrefix(pe.Code, "08") || pe.Code == "57P01" || pe.Code == "57P02" || pe.Code == "57P03"
	}
	var ne *net.OpError
	if errors.As(err, &ne) {
		return true
	}
	if errors.Is(err, io.ErrUnexpectedEOF) {
		// The connection ended mid-answer (a crashed primary: agentd
		// chaos r4).
		return true
	}
	return pgconn.SafeToRetry(err)
}

// sqliteFull is SQLITE_FULL, the primary result code of a write that found
// the disk (or max_page_count) full.
const sqliteFull = 13

// isStoreFull reports SQLite's "database or disk is full": the SQLite
// driver's error has Code() int (an interface here, so that the server
// does not import the driver). Found by `agentd chaos disk`: a full disk
// answered 500 internal_error.
func isStoreFull(err error) bool {
	var coder interface{ Code() int }
	return errors.As(err, &coder) && coder.Code()&0xff == sqliteFull && strings.Contains(err.Error(), "full")
}
