-- 0015_conversation_turns: the order of a conversation's messages under the
-- concurrency policies enqueue, interrupt and rollback (run.Policy).
--
--   * runs.turn: the run's place in its conversation, 1, 2, 3, ... as the
--     store accepted them (0: a run outside the order, policy reject);
--   * conversation_turns: the last turn handed out per conversation (the
--     conversation row itself may not exist yet: a new conversation is
--     created when its first turn commits).

ALTER TABLE runs ADD COLUMN turn INTEGER NOT NULL DEFAULT 0;

CREATE UNIQUE INDEX runs_conversation_turn ON runs (conversation_id, turn)
    WHERE turn > 0;

-- ClaimRun's check that no earlier run of the conversation is unfinished.
CREATE INDEX runs_conversation_unfinished ON runs (conversation_id, turn)
    WHERE status IN ('queued', 'running', 'requires_action');

CREATE TABLE conversation_turns (
    conversation_id TEXT NOT NULL PRIMARY KEY,
    last_turn INTEGER NOT NULL
);
