-- 0015_conversation_turns: the order of a conversation's messages under the
-- concurrency policies enqueue, interrupt and rollback (run.Policy).
--
-- The PostgreSQL twin of sqlite/0015_conversation_turns.sql:
--   * runs.turn: the run's place in its conversation, 1, 2, 3, ... as the
--     store accepted them (0: a run outside the order, policy reject);
--     adding a column with a constant default does not rewrite the table;
--   * conversation_turns: the last turn handed out per conversation. The
--     upsert that takes a turn locks its row until the run's insert
--     commits, so turns are handed out in commit order.

ALTER TABLE runs ADD COLUMN turn bigint NOT NULL DEFAULT 0;

CREATE UNIQUE INDEX runs_conversation_turn ON runs (conversation_id, turn)
    WHERE turn > 0;

-- ClaimRun's check that no earlier run of the conversation is unfinished.
CREATE INDEX runs_conversation_unfinished ON runs (conversation_id, turn)
    WHERE status IN ('queued', 'running', 'requires_action');

CREATE TABLE conversation_turns (
    conversation_id text COLLATE "C" PRIMARY KEY,
    last_turn bigint NOT NULL
);
