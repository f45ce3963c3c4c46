package sqlstore

import (
	"context"
	"encoding/json"
	"fmt"
)

const (
	qPutAgentDefinition = `INSERT INTO agent_definitions (digest, agent, definition, created_at)
		VALUES ($1, $2, $3, $4) ON CONFLICT (digest) DO NOTHING`
	qGetAgentDefinition = `SELECT definition FROM agent_definitions WHERE digest = $1`
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
