package sqlstore

import (
	"context"
	"encoding/json"
	"fmt"
	"time"
)

const (
	// qPutAgentDefinition: storing a digest again moves created_at (the
	// time it was last stored, the retention sweep's age guard) and
	// nothing else.
	qPutAgentDefinition = `INSERT INTO agent_definitions (digest, agent, definition, created_at)
		VALUES ($1, $2, $3, $4) ON CONFLICT (digest) DO UPDATE SET created_at = excluded.created_at`
	qGetAgentDefinition = `SELECT definition FROM agent_definitions WHERE digest = $1`
	// QDeleteAgentDefinitions: definitions no run references, last stored
	// before $1 (runs_agent_digest, migration 0019, makes the NOT EXISTS
	// one index probe).
	QDeleteAgentDefinitions = `DELETE FROM agent_definitions WHERE digest IN (
		SELECT d.digest FROM agent_definitions d
		WHERE d.created_at < $1
			AND NOT EXISTS (SELECT 1 FROM runs r WHERE r.agent_digest = d.digest AND r.agent_digest <> '')
		ORDER BY d.created_at LIMIT $2)`
)

// PutAgentDefinition implements store.AgentDefinitions.
func (s *Store) PutAgentDefinition(ctx context.Context, digest, agent string, def json.RawMessage) error {
	if digest == "" || len(def) == 0 {
		return fmt.Errorf("%s: put agent definition: empty digest or definition", s.d.Name)
	}
	if _, err := s.db.Write.Exec(ctx, qPutAgentDefinition, digest, agent, string(def), s.d.Time(Now())); err != nil {
		return fmt.Errorf("%s: put agent definition %s of %q: %w", s.d.Name, digest, agent, s.d.MapErr(err))
	}
	return nil
}

// GetAgentDefinition implements store.AgentDefinitions (store.ErrNotFound
// when there is none).
func (s *Store) GetAgentDefinition(ctx context.Context, digest string) (json.RawMessage, error) {
	var def string
	err := s.db.Read.QueryRow(ctx, qGetAgentDefinition, digest).Scan(&def)
	if err != nil { // store.ErrNotFound when there is none
		return nil, fmt.Errorf("%s: agent definition %s: %w", s.d.Name, digest, s.d.MapErr(err))
	}
	return json.RawMessage(def), nil
}

// DeleteAgentDefinitions deletes up to limit definitions that no run
// references and that were last stored before storedBefore (see
// store.Retention).
func (s *Store) DeleteAgentDefinitions(ctx context.Context, storedBefore time.Time, limit int) (int, error) {
	return s.deleteBatch(ctx, "agent definitions", QDeleteAgentDefinitions, storedBefore, limit)
}
