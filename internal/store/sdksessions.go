package store

import (
	"context"
	"encoding/json"
)

// SDKSessionKey names one Claude Agent SDK session transcript in agentd's
// store (the SDK's SessionKey without its projectKey: the tenant is the
// scope). Subpath is "" for the main transcript, e.g.
// "subagents/agent-1" for a subagent's.
type SDKSessionKey struct {
	Tenant    string
	SessionID string
	Subpath   string
}

// SDKSessionAppend is one batch of transcript entries a hosted program's
// SessionStore adapter mirrors (docs/agent-sdk.md).
type SDKSessionAppend struct {
	Key SDKSessionKey
	// ConversationID and RunID are the run whose program appended (set by
	// agentd from the run key, never by the program): the next turn of the
	// conversation finds its session by them (LatestSDKSession).
	ConversationID string
	RunID          string
	// Entries are JSON objects, one transcript line each. An entry with a
	// string "uuid" is stored once per key: a later entry with the same
	// uuid is ignored (the SDK's retries and replays).
	Entries []json.RawMessage
}

// SDKSessions stores the transcripts of hosted programs' Agent SDK
// sessions (the SessionStore adapter's server side).
type SDKSessions interface {
	// AppendSDKSession stores a batch after the key's entries, in order,
	// in one transaction. An entry that is not a JSON object is an error
	// and nothing is stored.
	AppendSDKSession(ctx context.Context, a SDKSessionAppend) error
	// LoadSDKSession returns the key's entries in append order; nil (no
	// error) for a key never written.
	LoadSDKSession(ctx context.Context, key SDKSessionKey) ([]json.RawMessage, error)
	// ListSDKSessionSubpaths returns the non-empty subpaths stored under
	// the tenant's session, sorted.
	ListSDKSessionSubpaths(ctx context.Context, tenant, sessionID string) ([]string, error)
	// LatestSDKSession returns the id of the main transcript the tenant's
	// conversation appended to last; "" when none.
	LatestSDKSession(ctx context.Context, tenant, conversationID string) (string, error)
}
