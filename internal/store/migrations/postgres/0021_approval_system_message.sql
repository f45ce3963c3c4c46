-- 0021_approval_system_message: the system.message a Managed Agents client
-- sent with a custom tool's result (internal/managed). The run appends it to
-- its system prompt from the model call the result resumes on, and every
-- later turn of the session carries it. '' for none, and for every other
-- decision.

ALTER TABLE run_approvals ADD COLUMN system_message TEXT NOT NULL DEFAULT '';
