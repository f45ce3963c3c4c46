package run

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/agentd/agentd/internal/store"
	"github.com/agentd/agentd/internal/tool"
)

// A run executes with the definition of the agent it was submitted under,
// whatever the configuration of the worker that executes or resumes it:
// a deploy that changes an agent (a new system prompt, other tools) never
// moves a run in flight to the new definition, nor mixes the two in one
// run (docs/reliability.md, R2b; docs/architecture.md).
//
// At submit the API instance records the digest of its configured agent's
// definition on the run (store.Run.AgentDigest) and stores the definition
// under it once (store.AgentDefinitions). A worker whose own definition
// has that digest runs its configured agent; any other worker runs the
// stored snapshot: its model, system prompt, limits and tools (looked up
// by name among the worker's configured tools), over the worker's own
// model client (resilience stack). Agents defined through the API pin
// their version instead (runInput.AgentVersion); hosted programs
// (Runtime) are not pinned.

// AgentDefinition is what a run keeps of its configured agent: everything
// that shapes its model calls and tool calls.
type AgentDefinition struct {
	Agent          string        `json:"agent"`
	Model          string        `json:"model"`
	System         string        `json:"system"`
	Tools          []string      `json:"tools"`
	MaxSteps       int           `json:"max_steps"`
	MaxTokens      int           `json:"max_tokens"`
	Timeout        time.Duration `json:"timeout"`
	ToolTimeout    time.Duration `json:"tool_timeout"`
	MaxCostUSD     float64       `json:"max_cost_usd"`
	FallbackModels []string      `json:"fallback_models,omitempty"`
	ApprovalTools  []string      `json:"approval_tools,omitempty"`
}

// definitionOf is a's definition.
func definitionOf(a *ChatAgent) AgentDefinition {
	d := AgentDefinition{
		Agent: a.Name, Model: a.Model, System: a.System, Tools: make([]string, 0, len(a.Tools)),
		MaxSteps: a.MaxSteps, MaxTokens: a.MaxTokens, Timeout: a.Timeout, ToolTimeout: a.ToolTimeout,
		MaxCostUSD: a.MaxCostUSD, FallbackModels: a.FallbackModels, ApprovalTools: a.Approval.Tools,
	}
	for _, t := range a.Tools {
		d.Tools = append(d.Tools, t.Spec().Name)
	}
	return d
}

// definitionRefresh is how often an instance stores the definition of a
// configured agent again while it submits runs with it: the retention
// sweep deletes a definition no run references only when it was last
// stored longer ago than retention.agent_definitions (at least
// config.MinRetentionAgentDefinitions, far more than this), so a
// definition stored for a run being submitted is never deleted before the
// run's row references it, however long the process has been up.
const definitionRefresh = time.Hour

// pinned is a configured agent's definition as stored.
type pinned struct {
	digest string
	raw    json.RawMessage

	mu       sync.Mutex // held while storing it
	storedAt time.Time  // when it was last stored (Service.Definitions); zero: not yet
}

// definitions are the Service's pinned definitions, computed once per
// configured agent, and the agents built from stored snapshots.
type definitions struct {
	mu      sync.Mutex
	own     map[string]*pinned    // configured agent name → its definition
	rebuilt map[string]*ChatAgent // digest → agent built from its snapshot
}

// ownDefinition returns the definition of a configured agent, or nil for
// an agent that is not pinned (not configured, or a hosted program).
func (s *Service) ownDefinition(a *ChatAgent) *pinned {
	if a == nil || a.Runtime != nil || s.Agents[a.Name] != a {
		return nil
	}
	s.defs.mu.Lock()
	defer s.defs.mu.Unlock()
	if p := s.defs.own[a.Name]; p != nil {
		return p
	}
	raw, err := json.Marshal(definitionOf(a))
	if err != nil { // cannot happen: plain fields
		return nil
	}
	sum := sha256.Sum256(raw)
	p := &pinned{digest: hex.EncodeToString(sum[:]), raw: raw}
	if s.defs.own == nil {
		s.defs.own = make(map[string]*pinned)
	}
	s.defs.own[a.Name] = p
	return p
}

// pinAgent returns the digest a new run of agent a records, after storing
// its definition (once per process, and again every definitionRefresh):
// "" when runs of a are not pinned.
func (s *Service) pinAgent(ctx context.Context, a *ChatAgent) (string, error) {
	p := s.ownDefinition(a)
	if p == nil || s.Definitions == nil {
		return "", nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.storedAt.IsZero() && time.Since(p.storedAt) < definitionRefresh {
		return p.digest, nil
	}
	if err := s.Definitions.PutAgentDefinition(context.WithoutCancel(ctx), p.digest, a.Name, p.raw); err != nil {
		// Not marked stored: the next run tries again.
		return "", fmt.Errorf("store the definition of agent %q: %w", a.Name, err)
	}
	p.storedAt = time.Now()
	return p.digest, nil
}

// errDefinition: a run's agent definition cannot be run here, ever (its
// snapshot is missing or names a tool this worker does not have). The run
// fails with the reason.
var errDefinition = errors.New("agent definition")

// agentOf returns the agent a run executes with: the definition it was
// submitted under (see the top of this file).
func (s *Service) agentOf(ctx context.Context, run store.Run, version int) (*ChatAgent, error) {
	a, err := s.agent(ctx, run.Tenant, run.Agent, version, run.ConversationID)
	if err != nil || run.AgentDigest == "" {
		return a, err
	}
	if p := s.ownDefinition(a); p != nil && p.digest == run.AgentDigest {
		return a, nil
	}
	s.defs.mu.Lock()
	rebuilt := s.defs.rebuilt[run.AgentDigest]
	s.defs.mu.Unlock()
	if rebuilt != nil {
		return rebuilt, nil
	}
	if s.Definitions == nil {
		return nil, fmt.Errorf("%w %s of run %s: this instance keeps no definitions", errDefinition, run.AgentDigest, run.ID)
	}
	raw, err := s.Definitions.GetAgentDefinition(ctx, run.AgentDigest)
	if errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("%w %s of run %s is not stored", errDefinition, run.AgentDigest, run.ID)
	}
	if err != nil {
		return nil, err // transient: retried
	}
	var d AgentDefinition
	if err := json.Unmarshal(raw, &d); err != nil {
		return nil, fmt.Errorf("%w %s of run %s: %v", errDefinition, run.AgentDigest, run.ID, err)
	}
	if rebuilt, err = s.rebuild(a, d); err != nil {
		return nil, fmt.Errorf("%w %s of run %s: %w", errDefinition, run.AgentDigest, run.ID, err)
	}
	s.Log.InfoContext(ctx, "run executes with the agent definition it was submitted under, not this instance's",
		"run_id", run.ID, "agent", a.Name, "run_definition", run.AgentDigest, "own_definition", s.ownDefinition(a).digestOrEmpty())
	s.defs.mu.Lock()
	if s.defs.rebuilt == nil {
		s.defs.rebuilt = make(map[string]*ChatAgent)
	}
	s.defs.rebuilt[run.AgentDigest] = rebuilt
	s.defs.mu.Unlock()
	return rebuilt, nil
}

func (p *pinned) digestOrEmpty() string {
	if p == nil {
		return ""
	}
	return p.digest
}

// rebuild returns base (this instance's agent of the same name: its model
// client, conversation limits and policies) with d's definition. Each of
// d's tools is looked up by name among this instance's configured tools.
func (s *Service) rebuild(base *ChatAgent, d AgentDefinition) (*ChatAgent, error) {
	a := *base
	a.Model, a.System = d.Model, d.System
	a.MaxSteps, a.MaxTokens, a.Timeout, a.ToolTimeout = d.MaxSteps, d.MaxTokens, d.Timeout, d.ToolTimeout
	a.MaxCostUSD, a.FallbackModels = d.MaxCostUSD, slices.Clone(d.FallbackModels)
	a.Approval.Tools = slices.Clone(d.ApprovalTools)
	a.Tools = make([]tool.Tool, 0, len(d.Tools))
	for _, name := range d.Tools {
		t := s.findTool(base, name)
		if t == nil {
			return nil, fmt.Errorf("tool %q is not configured on this instance", name)
		}
		a.Tools = append(a.Tools, t)
	}
	return &a, nil
}

// findTool looks name up among base's tools, then every configured
// agent's.
func (s *Service) findTool(base *ChatAgent, name string) tool.Tool {
	for _, t := range base.Tools {
		if t.Spec().Name == name {
			return t
		}
	}
	for _, other := range s.Agents {
		for _, t := range other.Tools {
			if t.Spec().Name == name {
				return t
			}
		}
	}
	return nil
}
