package config

import (
	"fmt"
	"time"
)

// Defaults of the retention section (docs/operations.md#retention).
const (
	DefaultRetentionRunEvents   = 7 * 24 * time.Hour
	DefaultRetentionCheckpoints = 7 * 24 * time.Hour
	DefaultRetentionRuns        = 30 * 24 * time.Hour
	DefaultRetentionUsage       = 90 * 24 * time.Hour
	DefaultRetentionAudit       = 365 * 24 * time.Hour
	// DefaultRetentionAgentDefinitions: stored agent definitions no run
	// references any more.
	DefaultRetentionAgentDefinitions = 7 * 24 * time.Hour
	DefaultRetentionInterval         = 10 * time.Minute
	DefaultRetentionBatchSize        = 1000

	// MinRetentionAudit is the least retention.audit: the store refuses
	// to delete younger audit rows (store.MinAuditRetention).
	MinRetentionAudit = 30 * 24 * time.Hour
	// MinRetentionAgentDefinitions is the least retention.agent_definitions:
	// an instance stores its definitions again every hour while it submits
	// runs with them, and a definition is written just before the run that
	// references it; a day leaves that write a wide margin.
	MinRetentionAgentDefinitions = 24 * time.Hour
	// MaxRetentionBatchSize bounds retention.batch_size, so that one
	// delete statement stays short.
	MaxRetentionBatchSize = 100000
)

// Retention is how long finished runs and their rows, usage rows and audit
// rows are kept before the retention sweeper deletes them. Queued and
// running runs are never deleted, whatever their age. There is no "keep
// forever" value per table (0 means the default): set a long duration, or
// Disabled to keep everything.
type Retention struct {
	// Disabled turns the retention sweeper off: nothing is ever deleted
	// (the store grows without bound). Defaults to false.
	Disabled bool `yaml:"disabled"`
	// RunEvents is how long the events of a finished run are kept after
	// it finished (a client can no longer replay its stream then).
	// Defaults to 168h (7 days).
	RunEvents time.Duration `yaml:"run_events"`
	// Checkpoints is how long the checkpoints of a finished run are kept
	// after it finished. Defaults to 168h (7 days).
	Checkpoints time.Duration `yaml:"checkpoints"`
	// Runs is how long a finished run is kept after it finished (GET
	// /v1/runs/{id} answers 404 then). Its events and checkpoints go no
	// later than the run. Defaults to 720h (30 days).
	Runs time.Duration `yaml:"runs"`
	// Usage is how long raw usage rows (one per model call) are kept;
	// older rows are rolled up into daily totals per tenant, key, agent
	// and model, kept for good, which GET /v1/usage still counts. Feedback
	// on runs is deleted this long after its last change (no roll-up).
	// Defaults to 2160h (90 days).
	Usage time.Duration `yaml:"usage"`
	// Audit is how long audit rows are kept; at least 720h (30 days).
	// Defaults to 8760h (365 days).
	Audit time.Duration `yaml:"audit"`
	// AgentDefinitions is how long a stored agent definition (the one a
	// run was submitted under, kept so that any worker finishes the run
	// with it) is kept after it was last stored once no run references it
	// any more: it goes after its last run (Runs). At least 24h. Defaults
	// to 168h (7 days).
	AgentDefinitions time.Duration `yaml:"agent_definitions"`
	// Interval is how often the sweeper runs. Defaults to 10m.
	Interval time.Duration `yaml:"interval"`
	// BatchSize is how many rows one delete statement removes at most
	// (1 to 100000); the sweeper repeats it until a table is done.
	// Defaults to 1000.
	BatchSize int `yaml:"batch_size"`
}

func (r *Retention) applyDefaults() {
	setDefault(&r.RunEvents, DefaultRetentionRunEvents)
	setDefault(&r.Checkpoints, DefaultRetentionCheckpoints)
	setDefault(&r.Runs, DefaultRetentionRuns)
	setDefault(&r.Usage, DefaultRetentionUsage)
	setDefault(&r.Audit, DefaultRetentionAudit)
	setDefault(&r.AgentDefinitions, DefaultRetentionAgentDefinitions)
	setDefault(&r.Interval, DefaultRetentionInterval)
	setDefault(&r.BatchSize, DefaultRetentionBatchSize)
}

func (r Retention) validate(v *validator) {
	v.positive("retention.run_events", r.RunEvents)
	v.positive("retention.checkpoints", r.Checkpoints)
	v.positive("retention.runs", r.Runs)
	v.positive("retention.usage", r.Usage)
	atLeast(v, "retention.audit", r.Audit, MinRetentionAudit, "must be >= 720h (audit rows younger than 30 days are never deleted)")
	atLeast(v, "retention.agent_definitions", r.AgentDefinitions, MinRetentionAgentDefinitions,
		"must be >= 24h (an instance stores the definitions it submits runs with again every hour)")
	v.positive("retention.interval", r.Interval)
	if r.BatchSize < 1 || r.BatchSize > MaxRetentionBatchSize {
		v.add("retention.batch_size", fmt.Sprintf("must be between 1 and %d", MaxRetentionBatchSize))
	}
}
