package sqlstore

import (
	"context"
	"fmt"

	"github.com/agentd/agentd/internal/store"
)

// FindRun returns the run with id whatever its tenant, or
// store.ErrNotFound: the operator console with an admin key, which sees
// every tenant. Tenant-scoped callers use GetRun.
func (s *Store) FindRun(ctx context.Context, id string) (store.Run, error) {
	r, err := s.scanRun(s.db.Read.QueryRow(ctx, `SELECT `+RunColumns+` FROM runs WHERE id = $1`, id))
	if err != nil {
		return store.Run{}, fmt.Errorf("%s: find run %s: %w", s.d.Name, id, s.d.MapErr(err))
	}
	return r, nil
}
