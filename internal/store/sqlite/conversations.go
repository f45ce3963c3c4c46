package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"time"

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
	_, err := s.exec(ctx, `INSERT INTO conversations
		(id, tenant, agent, version, next_seq, created_at, updated_at, expires_at)
		VALUES (?, ?, ?, 0, 1, ?, ?, ?)`,
		c.ID, c.Tenant, c.Agent, toMicros(t), toMicros(t), toMicros(c.ExpiresAt))
	if err != nil {
		return store.Conversation{}, fmt.Errorf("sqlite: create conversation %s: %w", p.ID, mapErr(err))
	}
	return c, nil
}

// GetConversation returns the conversation with its messages in seq order,
// read in one snapshot. store.ErrNotFound if it does not exist or belongs to
// another tenant.
func (s *Store) GetConversation(ctx context.Context, tenant, id string) (store.Conversation, error) {
	c, err := s.getConversation(ctx, tenant, id)
	if err != nil {
		return store.Conversation{}, fmt.Errorf("sqlite: get conversation %s: %w", id, mapErr(err))
	}
	return c, nil
}

const (
	qSelectConversation = `SELECT id, tenant, agent, version, created_at, updated_at, expires_at
		FROM conversations WHERE id = ? AND tenant = ?`
	qSelectMessages = `SELECT seq, role, content, tokens, created_at
		FROM messages WHERE conversation_id = ? ORDER BY seq`
)

func (s *Store) getConversation(ctx context.Context, tenant, id string) (store.Conversation, error) {
	sts, err := s.rstmt.getAll(ctx, qSelectConversation, qSelectMessages)
	if err != nil {
		return store.Conversation{}, err
	}
	tx, err := s.read.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return store.Conversation{}, err
	}
	defer rollback(tx)

	var (
		c                               store.Conversation
		createdAt, updatedAt, expiresAt sql.NullInt64
	)
	err = tx.StmtContext(ctx, sts[0]).QueryRowContext(ctx, id, tenant).
		Scan(&c.ID, &c.Tenant, &c.Agent, &c.Version, &createdAt, &updatedAt, &expiresAt)
	if err != nil {
		return store.Conversation{}, err
	}
	c.CreatedAt, c.UpdatedAt, c.ExpiresAt = fromMicros(createdAt), fromMicros(updatedAt), fromMicros(expiresAt)

	rows, err := tx.StmtContext(ctx, sts[1]).QueryContext(ctx, id)
	if err != nil {
		return store.Conversation{}, err
	}
	defer rows.Close()
	for rows.Next() {
		var (
			m       store.Message
			content []byte
			at      sql.NullInt64
		)
		if err := rows.Scan(&m.Seq, &m.Role, &content, &m.Tokens, &at); err != nil {
			return store.Conversation{}, err
		}
		m.Content, m.CreatedAt = fromJSON(content), fromMicros(at)
		c.Messages = append(c.Messages, m)
	}
	if err := rows.Err(); err != nil {
		return store.Conversation{}, err
	}
	return c, nil
}

// AppendMessages appends p.Messages in one transaction. The store assigns
// each message's Seq (the caller's is ignored) and, when zero, its
// CreatedAt. See store.AppendMessagesParams for the rest.
func (s *Store) AppendMessages(ctx context.Context, p store.AppendMessagesParams) (int64, error) {
	v, err := s.appendMessages(ctx, p)
	if err != nil {
		return 0, fmt.Errorf("sqlite: append messages to conversation %s: %w", p.ConversationID, mapErr(err))
	}
	return v, nil
}

const (
	qSelectVersion = `SELECT version, next_seq FROM conversations WHERE id = ? AND tenant = ?`
	qInsertMessage = `INSERT INTO messages (conversation_id, seq, role, content, tokens, created_at)
		VALUES (?, ?, ?, ?, ?, ?)`
	qTrimMessages     = `DELETE FROM messages WHERE conversation_id = ? AND seq < ?`
	qBumpConversation = `UPDATE conversations
		SET version = version + 1, next_seq = ?, updated_at = ?, expires_at = coalesce(?, expires_at)
		WHERE id = ?`
)

func (s *Store) appendMessages(ctx context.Context, p store.AppendMessagesParams) (int64, error) {
	sts, err := s.wstmt.getAll(ctx, append([]string{qSelectVersion, qInsertMessage, qTrimMessages, qBumpConversation, qUpdateRun}, stepQueries...)...)
	if err != nil {
		return 0, err
	}
	tx, err := s.write.BeginTx(ctx, nil) // BEGIN IMMEDIATE: nobody writes between check and update
	if err != nil {
		return 0, err
	}
	defer rollback(tx)

	var version, nextSeq int64
	err = tx.StmtContext(ctx, sts[0]).QueryRowContext(ctx, p.ConversationID, p.Tenant).Scan(&version, &nextSeq)
	if err != nil {
		return 0, err
	}
	if version != p.ExpectedVersion {
		return 0, fmt.Errorf("%w: version is %d, expected %d", store.ErrConflict, version, p.ExpectedVersion)
	}

	t := now()
	if len(p.Messages) > 0 {
		insert := tx.StmtContext(ctx, sts[1])
		for _, m := range p.Messages {
			at := m.CreatedAt
			if at.IsZero() {
				at = t
			}
			if _, err := insert.ExecContext(ctx, p.ConversationID, nextSeq, m.Role,
				toJSON(m.Content), m.Tokens, toMicros(at)); err != nil {
				return 0, err
			}
			nextSeq++
		}
	}
	if p.TrimBeforeSeq > 0 {
		if _, err := tx.StmtContext(ctx, sts[2]).ExecContext(ctx, p.ConversationID, p.TrimBeforeSeq); err != nil {
			return 0, err
		}
	}
	if _, err := tx.StmtContext(ctx, sts[3]).ExecContext(ctx,
		nextSeq, toMicros(t), toMicros(p.ExpiresAt), p.ConversationID); err != nil {
		return 0, err
	}
	if r := p.FinishRun; r != nil {
		res, err := tx.StmtContext(ctx, sts[4]).ExecContext(ctx, updateRunArgs(*r)...)
		if err == nil {
			err = affectedOne(res)
		}
		if err != nil {
			return 0, fmt.Errorf("finish run %s: %w", r.ID, err)
		}
	}
	if err := saveStepTx(ctx, tx, sts[5:], p.Checkpoint, p.Events); err != nil {
		return 0, err
	}
	if err := tx.Commit(); err != nil {
		return 0, err
	}
	return version + 1, nil
}

// DeleteConversation deletes a conversation and (by cascade) its messages.
// store.ErrNotFound if it does not exist or belongs to another tenant.
func (s *Store) DeleteConversation(ctx context.Context, tenant, id string) error {
	res, err := s.write.ExecContext(ctx, `DELETE FROM conversations WHERE id = ? AND tenant = ?`, id, tenant)
	if err == nil {
		err = affectedOne(res)
	}
	if err != nil {
		return fmt.Errorf("sqlite: delete conversation %s: %w", id, mapErr(err))
	}
	return nil
}

// DeleteExpiredConversations deletes the conversations whose ExpiresAt is
// set and before now, with their messages, and returns how many.
func (s *Store) DeleteExpiredConversations(ctx context.Context, now time.Time) (int, error) {
	res, err := s.write.ExecContext(ctx, `DELETE FROM conversations
		WHERE expires_at IS NOT NULL AND expires_at < ?`, now.UnixMicro())
	if err != nil {
		return 0, fmt.Errorf("sqlite: delete expired conversations: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("sqlite: delete expired conversations: %w", err)
	}
	return int(n), nil
}

// affectedOne turns "no row matched" into sql.ErrNoRows.
func affectedOne(res sql.Result) error {
	n, err := res.RowsAffected()
	if err != nil {
		return err
	}
	if n == 0 {
		return sql.ErrNoRows
	}
	return nil
}
