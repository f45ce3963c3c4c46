package sqlstore

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/agentd/agentd/internal/store"
)

const (
	// qAppendSDKSession: an entry whose uuid the session has already is
	// ignored (the partial unique index on uuid <> '').
	qAppendSDKSession = `INSERT INTO sdk_session_entries (tenant, session_id, subpath, uuid, conversation_id, run_id, entry, created_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING`
	qLoadSDKSession = `SELECT entry FROM sdk_session_entries
		WHERE tenant = $1 AND session_id = $2 AND subpath = $3 ORDER BY seq`
	qSDKSessionSubpaths = `SELECT DISTINCT subpath FROM sdk_session_entries
		WHERE tenant = $1 AND session_id = $2 AND subpath <> '' ORDER BY subpath`
	// qDeleteSDKSessions: entries of sessions with no entry since $1.
	qDeleteSDKSessions = `DELETE FROM sdk_session_entries WHERE seq IN (
		SELECT e.seq FROM sdk_session_entries e
		WHERE e.created_at < $1 AND NOT EXISTS (
			SELECT 1 FROM sdk_session_entries n
			WHERE n.tenant = e.tenant AND n.session_id = e.session_id AND n.created_at >= $1)
		ORDER BY e.created_at LIMIT $2)`
	qLatestSDKSession = `SELECT session_id FROM sdk_session_entries
		WHERE tenant = $1 AND conversation_id = $2 AND conversation_id <> '' AND subpath = ''
		ORDER BY seq DESC LIMIT 1`
)

// AppendSDKSession stores a batch of transcript entries (see
// store.SDKSessions).
func (s *Store) AppendSDKSession(ctx context.Context, a store.SDKSessionAppend) error {
	k := a.Key
	if k.SessionID == "" {
		return fmt.Errorf("%s: append to an sdk session: no session id", s.d.Name)
	}
	uuids := make([]string, len(a.Entries))
	for i, e := range a.Entries {
		var obj map[string]json.RawMessage
		if err := json.Unmarshal(e, &obj); err != nil || obj == nil {
			return fmt.Errorf("%s: append to sdk session %s: entry %d is not a JSON object", s.d.Name, k.SessionID, i)
		}
		var u string
		if raw, ok := obj["uuid"]; ok && json.Unmarshal(raw, &u) != nil {
			u = ""
		}
		uuids[i] = u
	}
	if len(a.Entries) == 0 {
		return nil
	}
	tx, err := s.db.Begin(ctx)
	if err != nil {
		return fmt.Errorf("%s: append to sdk session %s: %w", s.d.Name, k.SessionID, err)
	}
	defer rollback(tx)
	now := s.d.Time(Now())
	for i, e := range a.Entries {
		if _, err := tx.Exec(ctx, qAppendSDKSession, k.Tenant, k.SessionID, k.Subpath, uuids[i],
			a.ConversationID, a.RunID, string(e), now); err != nil {
			return fmt.Errorf("%s: append to sdk session %s: %w", s.d.Name, k.SessionID, s.d.MapErr(err))
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("%s: append to sdk session %s: commit: %w", s.d.Name, k.SessionID, s.d.MapErr(err))
	}
	return nil
}

// LoadSDKSession returns a transcript's entries in order (see
// store.SDKSessions).
func (s *Store) LoadSDKSession(ctx context.Context, k store.SDKSessionKey) ([]json.RawMessage, error) {
	rows, err := s.db.Read.Query(ctx, qLoadSDKSession, k.Tenant, k.SessionID, k.Subpath)
	if err != nil {
		return nil, fmt.Errorf("%s: load sdk session %s: %w", s.d.Name, k.SessionID, s.d.MapErr(err))
	}
	defer rows.Close()
	var out []json.RawMessage
	for rows.Next() {
		var e string
		if err := rows.Scan(&e); err != nil {
			return nil, fmt.Errorf("%s: load sdk session %s: %w", s.d.Name, k.SessionID, err)
		}
		out = append(out, json.RawMessage(e))
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("%s: load sdk session %s: %w", s.d.Name, k.SessionID, s.d.MapErr(err))
	}
	return out, nil
}

// ListSDKSessionSubpaths returns the subagent transcripts of a session
// (see store.SDKSessions).
func (s *Store) ListSDKSessionSubpaths(ctx context.Context, tenant, sessionID string) ([]string, error) {
	rows, err := s.db.Read.Query(ctx, qSDKSessionSubpaths, tenant, sessionID)
	if err != nil {
		return nil, fmt.Errorf("%s: list sdk session %s subpaths: %w", s.d.Name, sessionID, s.d.MapErr(err))
	}
	defer rows.Close()
	out := []string{}
	for rows.Next() {
		var p string
		if err := rows.Scan(&p); err != nil {
			return nil, fmt.Errorf("%s: list sdk session %s subpaths: %w", s.d.Name, sessionID, err)
		}
		out = append(out, p)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("%s: list sdk session %s subpaths: %w", s.d.Name, sessionID, s.d.MapErr(err))
	}
	return out, nil
}

// DeleteSDKSessions deletes up to limit entries of sessions with no entry
// appended since lastAppendBefore (see store.Retention).
func (s *Store) DeleteSDKSessions(ctx context.Context, lastAppendBefore time.Time, limit int) (int, error) {
	return s.deleteBatch(ctx, "sdk sessions", qDeleteSDKSessions, lastAppendBefore, limit)
}

// LatestSDKSession returns the session a conversation appended to last
// (see store.SDKSessions).
func (s *Store) LatestSDKSession(ctx context.Context, tenant, conversationID string) (string, error) {
	if conversationID == "" {
		return "", nil
	}
	rows, err := s.db.Read.Query(ctx, qLatestSDKSession, tenant, conversationID)
	if err != nil {
		return "", fmt.Errorf("%s: latest sdk session of conversation %s: %w", s.d.Name, conversationID, s.d.MapErr(err))
	}
	defer rows.Close()
	var id string
	if rows.Next() {
		if err := rows.Scan(&id); err != nil {
			return "", fmt.Errorf("%s: latest sdk session of conversation %s: %w", s.d.Name, conversationID, err)
		}
	}
	if err := rows.Err(); err != nil {
		return "", fmt.Errorf("%s: latest sdk session of conversation %s: %w", s.d.Name, conversationID, s.d.MapErr(err))
	}
	return id, nil
}
