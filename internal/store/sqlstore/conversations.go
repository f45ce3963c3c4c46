package sqlstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/agentd/agentd/internal/store"
)

// qCreateConversation inserts a conversation at version 0 (CreateConversation,
// AppendMessagesParams.Create).
const qCreateConversation = `INSERT INTO conversations
	(id, tenant, agent, version, next_seq, created_at, updated_at, expires_at)
	VALUES ($1, $2, $3, 0, 1, $4, $4, $5)`

// CreateConversation inserts a conversation at version 0; CreatedAt and
// UpdatedAt are now. store.ErrConflict if the id exists (in any tenant).
func (s *Store) CreateConversation(ctx context.Context, p store.CreateConversationParams) (store.Conversation, error) {
	t := Now()
	c := store.Conversation{
		ID:        p.ID,
		Tenant:    p.Tenant,
		Agent:     p.Agent,
		Version:   0,
		NextSeq:   1,
		CreatedAt: t,
		UpdatedAt: t,
		ExpiresAt: NormTime(p.ExpiresAt),
	}
	_, err := s.db.Write.Exec(ctx, qCreateConversation, c.ID, c.Tenant, c.Agent, s.d.Time(t), s.d.Time(c.ExpiresAt))
	if err != nil {
		return store.Conversation{}, fmt.Errorf("%s: create conversation %s: %w", s.d.Name, p.ID, s.d.MapErr(err))
	}
	return c, nil
}

// qGetConversation reads a conversation and its messages in one statement,
// so in one snapshot on both backends: the conversation's row first (kind
// 0), then one row per message (kind 1). The columns of the other kind are
// empty constants, which scan without allocating; the conversation's row
// carries its next_seq in the seq column.
const qGetConversation = `SELECT 0 AS kind, id, tenant, agent, version, created_at, updated_at, expires_at,
		next_seq AS seq, '' AS role, NULL AS content, 0 AS tokens, NULL AS message_at
	FROM conversations WHERE id = $1 AND tenant = $2
	UNION ALL
	SELECT 1, '', '', '', 0, NULL, NULL, NULL, m.seq, m.role, m.content, m.tokens, m.created_at
	FROM messages m JOIN conversations c ON c.id = m.conversation_id
	WHERE c.id = $1 AND c.tenant = $2
	ORDER BY kind, seq`

// GetConversation returns the conversation with its messages in seq order,
// read in one snapshot (one statement). store.ErrNotFound if it does not
// exist or belongs to another tenant.
func (s *Store) GetConversation(ctx context.Context, tenant, id string) (store.Conversation, error) {
	c, err := s.getConversation(ctx, tenant, id)
	if err != nil {
		return store.Conversation{}, fmt.Errorf("%s: get conversation %s: %w", s.d.Name, id, s.d.MapErr(err))
	}
	return c, nil
}

func (s *Store) getConversation(ctx context.Context, tenant, id string) (store.Conversation, error) {
	rows, err := s.db.Read.Query(ctx, qGetConversation, id, tenant)
	if err != nil {
		return store.Conversation{}, err
	}
	defer rows.Close()
	// The destinations are declared once, so a row costs no allocation
	// beyond its role and content. Message rows have NULL conversation
	// times: they go to ignore.
	var (
		c                   store.Conversation
		found               bool
		kind                int
		cid, ctenant, agent string
		version             int64
		m                   store.Message
		content             []byte
		ignore              time.Time
	)
	dest := []any{&kind, &cid, &ctenant, &agent, &version,
		s.d.ScanTime(&c.CreatedAt), s.d.ScanTime(&c.UpdatedAt), s.d.ScanTime(&c.ExpiresAt),
		&m.Seq, &m.Role, &content, &m.Tokens, s.d.ScanTime(&m.CreatedAt)}
	for rows.Next() {
		if found {
			dest[5], dest[6], dest[7] = s.d.ScanTime(&ignore), s.d.ScanTime(&ignore), s.d.ScanTime(&ignore)
		}
		if err := rows.Scan(dest...); err != nil {
			return store.Conversation{}, err
		}
		if kind == 0 {
			found = true
			c.ID, c.Tenant, c.Agent, c.Version, c.NextSeq = cid, ctenant, agent, version, m.Seq
			continue
		}
		m.Content = fromJSON(content)
		c.Messages = append(c.Messages, m)
	}
	if err := rows.Err(); err != nil {
		return store.Conversation{}, err
	}
	if !found {
		return store.Conversation{}, store.ErrNotFound
	}
	return c, nil
}

const qConversationHead = `SELECT id, tenant, agent, version, next_seq, created_at, updated_at, expires_at
	FROM conversations WHERE id = $1 AND tenant = $2`

// ConversationHead returns the conversation's row without its messages:
// one primary-key lookup. store.ErrNotFound as GetConversation.
func (s *Store) ConversationHead(ctx context.Context, tenant, id string) (store.Conversation, error) {
	var c store.Conversation
	err := s.db.Read.QueryRow(ctx, qConversationHead, id, tenant).Scan(&c.ID, &c.Tenant, &c.Agent, &c.Version, &c.NextSeq,
		s.d.ScanTime(&c.CreatedAt), s.d.ScanTime(&c.UpdatedAt), s.d.ScanTime(&c.ExpiresAt))
	if err != nil {
		return store.Conversation{}, fmt.Errorf("%s: conversation head %s: %w", s.d.Name, id, s.d.MapErr(err))
	}
	return c, nil
}

// AppendMessages appends p.Messages in one transaction. The store assigns
// each message's Seq (the caller's is ignored) and, when zero, its
// CreatedAt. See store.AppendMessagesParams for the rest.
func (s *Store) AppendMessages(ctx context.Context, p store.AppendMessagesParams) (int64, error) {
	v, err := s.appendMessages(ctx, p)
	if err != nil {
		return 0, fmt.Errorf("%s: append messages to conversation %s: %w", s.d.Name, p.ConversationID, s.d.MapErr(err))
	}
	return v, nil
}

const (
	// qBumpConversation is the version check: as the UPDATE's condition it
	// locks the row (PostgreSQL; SQLite's writer holds the database), so a
	// concurrent append with the same expected version waits for this
	// transaction and then matches nothing. It reserves the seqs
	// (next_seq += n); the inserts read them back.
	qBumpConversation = `UPDATE conversations
		SET version = version + 1, next_seq = next_seq + $4, updated_at = $5, expires_at = coalesce($6, expires_at)
		WHERE id = $1 AND tenant = $2 AND version = $3
		RETURNING next_seq`
	qInsertMessage = `INSERT INTO messages (conversation_id, seq, role, content, tokens, created_at)
		SELECT id, next_seq - $2, $3, $4, $5, $6 FROM conversations
		WHERE id = $1 AND version = $7`
	qTrimMessages        = `DELETE FROM messages WHERE conversation_id = $1 AND seq < $2`
	qConversationVersion = `SELECT version FROM conversations WHERE id = $1 AND tenant = $2`
)

func (s *Store) appendMessages(ctx context.Context, p store.AppendMessagesParams) (int64, error) {
	tx, err := s.db.Begin(ctx)
	if err != nil {
		return 0, err
	}
	defer rollback(tx)

	// One batch (one round trip on PostgreSQL). If the UPDATE matched
	// nothing, whatever the rest did is rolled back.
	t := Now()
	n := int64(len(p.Messages))
	b := &Batch{Queries: make([]Queued, 0, len(p.Messages)+4+len(p.Events))}
	if p.Create {
		if p.ExpectedVersion != 0 {
			return 0, fmt.Errorf("create conversation %s: expected version %d, want 0", p.ConversationID, p.ExpectedVersion)
		}
		created := NormTime(p.CreatedAt)
		if created.IsZero() {
			created = t
		}
		b.Queue(qCreateConversation, p.ConversationID, p.Tenant, p.Agent, s.d.Time(created), s.d.Time(time.Time{}))
	}
	b.Queue(qBumpConversation, p.ConversationID, p.Tenant, p.ExpectedVersion, n, s.d.Time(t), s.d.Time(p.ExpiresAt))
	for i, m := range p.Messages {
		at := m.CreatedAt
		if at.IsZero() {
			at = t
		}
		b.Queue(qInsertMessage, p.ConversationID, n-int64(i), m.Role, JSON(m.Content), m.Tokens, s.d.Time(at), p.ExpectedVersion+1)
	}
	if p.TrimBeforeSeq > 0 {
		b.Queue(qTrimMessages, p.ConversationID, p.TrimBeforeSeq)
	}
	if p.FinishRun != nil {
		b.Queue(qUpdateRun, s.updateRunArgs(*p.FinishRun)...)
	}
	q := s.queueStep(b, p.Checkpoint, p.Events, t)
	br := tx.SendBatch(ctx, b)
	if p.Create {
		if _, err := br.Exec(); err != nil {
			_ = br.Close()
			return 0, fmt.Errorf("create conversation: %w", s.d.MapErr(err))
		}
	}
	var nextSeq int64
	if err := br.QueryRow().Scan(&nextSeq); err != nil {
		_ = br.Close()
		if !errors.Is(s.d.MapErr(err), store.ErrNotFound) {
			return 0, err
		}
		rollback(tx)
		// Missing, another tenant's, or another version: tell which.
		var version int64
		if err := s.db.Read.QueryRow(ctx, qConversationVersion, p.ConversationID, p.Tenant).Scan(&version); err != nil {
			return 0, err
		}
		return 0, fmt.Errorf("%w: version is %d, expected %d", store.ErrConflict, version, p.ExpectedVersion)
	}
	for range p.Messages {
		n, err := br.Exec()
		if err == nil && n != 1 {
			err = errors.New("message not inserted")
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
		n, err := br.Exec()
		if err == nil && n != 1 {
			err = store.ErrNotFound
		}
		if err != nil {
			_ = br.Close()
			return 0, fmt.Errorf("finish run %s: %w", r.ID, err)
		}
	}
	if err := readStep(br, q); err != nil {
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
	n, err := s.db.Write.Exec(ctx, `DELETE FROM conversations WHERE id = $1 AND tenant = $2`, id, tenant)
	if err == nil && n == 0 {
		err = store.ErrNotFound
	}
	if err != nil {
		return fmt.Errorf("%s: delete conversation %s: %w", s.d.Name, id, s.d.MapErr(err))
	}
	return nil
}

// DeleteExpiredConversations deletes the conversations whose ExpiresAt is
// set and before now, with their messages, and returns how many. It
// deletes them sweepBatch at a time (see deleteInBatches).
func (s *Store) DeleteExpiredConversations(ctx context.Context, now time.Time) (int, error) {
	n, err := s.deleteInBatches(ctx, `DELETE FROM conversations WHERE id IN (
		SELECT id FROM conversations WHERE expires_at IS NOT NULL AND expires_at < $1
		ORDER BY expires_at LIMIT $2)`, s.d.Time(now))
	if err != nil {
		return n, fmt.Errorf("%s: delete expired conversations: %w", s.d.Name, err)
	}
	return n, nil
}

// sweepBatch is the most rows a sweep deletes in one statement.
const sweepBatch = 500

// deleteInBatches runs q, a DELETE of at most $2 rows matching $1 (arg),
// with $2 = sweepBatch until it deletes fewer, and returns how many rows it
// deleted. Each batch is a statement of its own: a backlog (after
// downtime) neither holds the one SQLite writer for its whole length nor
// makes one transaction journal all of it.
func (s *Store) deleteInBatches(ctx context.Context, q string, arg any) (int, error) {
	n := 0
	for {
		k, err := s.db.Write.Exec(ctx, q, arg, sweepBatch)
		n += int(k)
		if err != nil || k < sweepBatch { // a cancelled ctx fails the next Exec
			return n, err
		}
	}
}
