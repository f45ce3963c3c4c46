package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/agentd/agentd/internal/store"
)

// CreateConversation inserts a conversation at version 0; CreatedAt and
// UpdatedAt are now. store.ErrConflict if the id exists (in any tenant).
func (s *Store) CreateConversation(ctx context.Context, p store.CreateConversationParams) (store.Conversation, error) {
	t := now()
	c := store.Conversation{
		ID:        p.ID,
		Tenant:    p.Tenant,
		Agent:     p.Agent,
		Version:   0,
		CreatedAt: t,
		UpdatedAt: t,
		ExpiresAt: normTime(p.ExpiresAt),
	}
	_, err := s.pool.Exec(ctx, `INSERT INTO conversations
		(id, tenant, agent, version, next_seq, created_at, updated_at, expires_at)
		VALUES ($1, $2, $3, 0, 1, $4, $4, $5)`,
		c.ID, c.Tenant, c.Agent, t, toTime(c.ExpiresAt))
	if err != nil {
		return store.Conversation{}, fmt.Errorf("postgres: create conversation %s: %w", p.ID, mapErr(err))
	}
	return c, nil
}

// GetConversation returns the conversation with its messages in seq order,
// read in one snapshot (one statement). store.ErrNotFound if it does not
// exist or belongs to another tenant.
func (s *Store) GetConversation(ctx context.Context, tenant, id string) (store.Conversation, error) {
	c, err := s.getConversation(ctx, tenant, id)
	if err != nil {
		return store.Conversation{}, fmt.Errorf("postgres: get conversation %s: %w", id, mapErr(err))
	}
	return c, nil
}

func (s *Store) getConversation(ctx context.Context, tenant, id string) (store.Conversation, error) {
	// One statement, so one snapshot: the conversation's row repeats on
	// every message row (or comes once with NULL message columns).
	rows, err := s.pool.Query(ctx, `SELECT c.id, c.tenant, c.agent, c.version, c.created_at, c.updated_at, c.expires_at,
			m.seq, m.role, m.content, m.tokens, m.created_at
		FROM conversations c LEFT JOIN messages m ON m.conversation_id = c.id
		WHERE c.id = $1 AND c.tenant = $2
		ORDER BY m.seq`, id, tenant)
	if err != nil {
		return store.Conversation{}, err
	}
	defer rows.Close()
	var (
		c     store.Conversation
		found bool
	)
	for rows.Next() {
		var (
			createdAt, updatedAt, expiresAt, mAt pgtype.Timestamptz
			seq, tokens                          pgtype.Int8
			role                                 pgtype.Text
			content                              []byte
		)
		if err := rows.Scan(&c.ID, &c.Tenant, &c.Agent, &c.Version, &createdAt, &updatedAt, &expiresAt,
			&seq, &role, &content, &tokens, &mAt); err != nil {
			return store.Conversation{}, err
		}
		found = true
		c.CreatedAt, c.UpdatedAt, c.ExpiresAt = fromTime(createdAt), fromTime(updatedAt), fromTime(expiresAt)
		if seq.Valid {
			c.Messages = append(c.Messages, store.Message{
				Seq: seq.Int64, Role: role.String, Content: fromJSON(content), Tokens: tokens.Int64, CreatedAt: fromTime(mAt),
			})
		}
	}
	if err := rows.Err(); err != nil {
		return store.Conversation{}, err
	}
	if !found {
		return store.Conversation{}, pgx.ErrNoRows
	}
	return c, nil
}

// AppendMessages appends p.Messages in one transaction. The store assigns
// each message's Seq (the caller's is ignored) and, when zero, its
// CreatedAt. See store.AppendMessagesParams for the rest.
func (s *Store) AppendMessages(ctx context.Context, p store.AppendMessagesParams) (int64, error) {
	v, err := s.appendMessages(ctx, p)
	if err != nil {
		return 0, fmt.Errorf("postgres: append messages to conversation %s: %w", p.ConversationID, mapErr(err))
	}
	return v, nil
}

func (s *Store) appendMessages(ctx context.Context, p store.AppendMessagesParams) (int64, error) {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return 0, err
	}
	defer rollback(tx)

	// One round trip. The version check is the UPDATE's condition: it locks
	// the row, so a concurrent append with the same expected version waits
	// for this transaction and then matches nothing. The UPDATE reserves
	// the seqs (next_seq += n); the inserts then read them back. If the
	// UPDATE matched nothing, whatever the rest did is rolled back.
	t := now()
	n := int64(len(p.Messages))
	b := &pgx.Batch{}
	b.Queue(`UPDATE conversations
		SET version = version + 1, next_seq = next_seq + $4, updated_at = $5, expires_at = coalesce($6, expires_at)
		WHERE id = $1 AND tenant = $2 AND version = $3
		RETURNING next_seq`,
		p.ConversationID, p.Tenant, p.ExpectedVersion, n, t, toTime(p.ExpiresAt))
	for i, m := range p.Messages {
		at := m.CreatedAt
		if at.IsZero() {
			at = t
		}
		b.Queue(`INSERT INTO messages (conversation_id, seq, role, content, tokens, created_at)
			SELECT id, next_seq - $2, $3, $4, $5, $6 FROM conversations
			WHERE id = $1 AND version = $7`,
			p.ConversationID, n-int64(i), m.Role, toJSON(m.Content), m.Tokens, toTime(at), p.ExpectedVersion+1)
	}
	if p.TrimBeforeSeq > 0 {
		b.Queue(`DELETE FROM messages WHERE conversation_id = $1 AND seq < $2`, p.ConversationID, p.TrimBeforeSeq)
	}
	if p.FinishRun != nil {
		b.Queue(qUpdateRun, updateRunArgs(*p.FinishRun)...)
	}
	queueStep(b, p.Checkpoint, p.Events, t)
	br := tx.SendBatch(ctx, b)
	var nextSeq int64
	if err := br.QueryRow().Scan(&nextSeq); err != nil {
		_ = br.Close()
		if !errors.Is(err, pgx.ErrNoRows) {
			return 0, err
		}
		rollback(tx)
		// Missing, another tenant's, or another version: tell which.
		var version int64
		if err := s.pool.QueryRow(ctx, `SELECT version FROM conversations WHERE id = $1 AND tenant = $2`,
			p.ConversationID, p.Tenant).Scan(&version); err != nil {
			return 0, err
		}
		return 0, fmt.Errorf("%w: version is %d, expected %d", store.ErrConflict, version, p.ExpectedVersion)
	}
	for range p.Messages {
		tag, err := br.Exec()
		if err == nil && tag.RowsAffected() != 1 {
			err = fmt.Errorf("message not inserted")
		}
		if err != nil {
			_ = br.Close()
			return 0, err
		}
	}
	if p.TrimBeforeSeq > 0 {
		if _, err := br.Exec(); err != nil {
			_ = br.Close()
			return 0, err
		}
	}
	if r := p.FinishRun; r != nil {
		tag, err := br.Exec()
		if err == nil && tag.RowsAffected() != 1 {
			err = pgx.ErrNoRows
		}
		if err != nil {
			_ = br.Close()
			return 0, fmt.Errorf("finish run %s: %w", r.ID, err)
		}
	}
	if err := readStep(br, p.Checkpoint, p.Events); err != nil {
		_ = br.Close()
		return 0, err
	}
	if err := br.Close(); err != nil {
		return 0, err
	}
	if err := tx.Commit(ctx); err != nil {
		return 0, err
	}
	return p.ExpectedVersion + 1, nil
}

// DeleteConversation deletes a conversation and (by cascade) its messages.
// store.ErrNotFound if it does not exist or belongs to another tenant.
func (s *Store) DeleteConversation(ctx context.Context, tenant, id string) error {
	tag, err := s.pool.Exec(ctx, `DELETE FROM conversations WHERE id = $1 AND tenant = $2`, id, tenant)
	if err == nil && tag.RowsAffected() == 0 {
		err = pgx.ErrNoRows
	}
	if err != nil {
		return fmt.Errorf("postgres: delete conversation %s: %w", id, mapErr(err))
	}
	return nil
}

// DeleteExpiredConversations deletes the conversations whose ExpiresAt is
// set and before now, with their messages, and returns how many.
func (s *Store) DeleteExpiredConversations(ctx context.Context, now time.Time) (int, error) {
	tag, err := s.pool.Exec(ctx, `DELETE FROM conversations
		WHERE expires_at IS NOT NULL AND expires_at < $1`, normTime(now))
	if err != nil {
		return 0, fmt.Errorf("postgres: delete expired conversations: %w", err)
	}
	return int(tag.RowsAffected()), nil
}
