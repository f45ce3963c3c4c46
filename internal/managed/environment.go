package managed

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/agentd/agentd/internal/store"
)

// agentd's environment is its own worker pool: tools run where agentd runs
// them (built-in, HTTP and MCP tools; custom tools in the client). An
// environment is a name sessions refer to. Its config is self_hosted, or
// cloud with unrestricted networking and no packages (there is no sandbox
// container to restrict or to install packages into): anything else is
// refused rather than accepted and not enforced.

// EnvironmentData is what store.ManagedEnvironment.Data holds.
type EnvironmentData struct {
	Name        string            `json:"name"`
	Description string            `json:"description,omitempty"`
	Config      EnvConfig         `json:"config"`
	Metadata    map[string]string `json:"metadata"`
	Scope       string            `json:"scope,omitempty"`
}

// EnvConfig is an environment's config: self_hosted or (unrestricted,
// without packages) cloud.
type EnvConfig struct {
	Type string `json:"type"`
}

// Environment is a BetaEnvironment.
type Environment struct {
	ID          string            `json:"id"`
	Type        string            `json:"type"`
	Name        string            `json:"name"`
	Description *string           `json:"description"`
	Config      any               `json:"config"`
	Metadata    map[string]string `json:"metadata"`
	Scope       string            `json:"scope"`
	CreatedAt   string            `json:"created_at"`
	UpdatedAt   string            `json:"updated_at"`
	ArchivedAt  *string           `json:"archived_at"`
}

// EnvironmentDeleted answers a delete.
type EnvironmentDeleted struct {
	ID   string `json:"id"`
	Type string `json:"type"`
}

// EnvironmentRequest is the body of create and update.
type EnvironmentRequest struct {
	Name        json.RawMessage    `json:"name"`
	Description json.RawMessage    `json:"description"`
	Config      json.RawMessage    `json:"config"`
	Metadata    map[string]*string `json:"metadata"`
	Scope       json.RawMessage    `json:"scope"`
}

type wireCloud struct {
	Type       string       `json:"type"`
	Networking typeOnly     `json:"networking"`
	Packages   wirePackages `json:"packages"`
}

type wirePackages struct {
	Type  string   `json:"type"`
	Apt   []string `json:"apt"`
	Cargo []string `json:"cargo"`
	Gem   []string `json:"gem"`
	Go    []string `json:"go"`
	Npm   []string `json:"npm"`
	Pip   []string `json:"pip"`
}

func renderEnvironment(e store.ManagedEnvironment) (Environment, error) {
	var d EnvironmentData
	if err := json.Unmarshal(e.Data, &d); err != nil {
		return Environment{}, fmt.Errorf("decode environment %s: %w", e.ID, err)
	}
	var cfg any = typeOnly{"self_hosted"}
	if d.Config.Type == "cloud" {
		cfg = wireCloud{Type: "cloud", Networking: typeOnly{"unrestricted"}, Packages: wirePackages{Type: "packages",
			Apt: []string{}, Cargo: []string{}, Gem: []string{}, Go: []string{}, Npm: []string{}, Pip: []string{}}}
	}
	md := d.Metadata
	if md == nil {
		md = map[string]string{}
	}
	scope := d.Scope
	if scope == "" {
		scope = "organization"
	}
	return Environment{ID: e.ID, Type: "environment", Name: d.Name, Description: optString(d.Description), Config: cfg,
		Metadata: md, Scope: scope, CreatedAt: mustTimestamp(e.CreatedAt), UpdatedAt: mustTimestamp(e.UpdatedAt),
		ArchivedAt: timestamp(e.ArchivedAt)}, nil
}

func parseEnvConfig(raw json.RawMessage) (EnvConfig, error) {
	var head struct {
		Type string `json:"type"`
	}
	if err := json.Unmarshal(raw, &head); err != nil {
		return EnvConfig{}, invalid("config: want an object with a type")
	}
	switch head.Type {
	case "self_hosted":
		var c struct {
			Type string `json:"type"`
		}
		if err := decodeStrict("config", raw, &c); err != nil {
			return EnvConfig{}, err
		}
		return EnvConfig{Type: "self_hosted"}, nil
	case "cloud", "":
		var c struct {
			Type       string          `json:"type"`
			Networking json.RawMessage `json:"networking"`
			Packages   json.RawMessage `json:"packages"`
		}
		if err := decodeStrict("config", raw, &c); err != nil {
			return EnvConfig{}, err
		}
		if present(c.Networking) && !isNull(c.Networking) {
			var n struct {
				Type string `json:"type"`
			}
			if err := json.Unmarshal(c.Networking, &n); err != nil {
				return EnvConfig{}, invalid("config.networking: want an object with a type")
			}
			if n.Type != "unrestricted" {
				return EnvConfig{}, unsupported("config.networking", fmt.Sprintf("%q networking (there is no sandbox container whose traffic agentd could restrict)", n.Type))
			}
		}
		if present(c.Packages) && !isNull(c.Packages) {
			var p map[string]json.RawMessage
			if err := json.Unmarshal(c.Packages, &p); err != nil {
				return EnvConfig{}, invalid("config.packages: want an object")
			}
			for k, v := range p {
				if k == "type" {
					continue
				}
				var list []string
				if err := json.Unmarshal(v, &list); err != nil {
					return EnvConfig{}, invalid("config.packages.%s: want an array of strings", k)
				}
				if len(list) > 0 {
					return EnvConfig{}, unsupported("config.packages."+k, "installing packages (there is no sandbox container)")
				}
			}
		}
		return EnvConfig{Type: "cloud"}, nil
	}
	return EnvConfig{}, invalid("config.type: want self_hosted or cloud, got %q", head.Type)
}

func applyEnvironmentRequest(d EnvironmentData, req EnvironmentRequest, create bool) (EnvironmentData, error) {
	if present(req.Name) {
		if isNull(req.Name) || json.Unmarshal(req.Name, &d.Name) != nil {
			return d, invalid("name: want a string")
		}
	}
	if strings.TrimSpace(d.Name) == "" {
		return d, invalid("name: required")
	}
	if present(req.Description) {
		d.Description = ""
		if !isNull(req.Description) && json.Unmarshal(req.Description, &d.Description) != nil {
			return d, invalid("description: want a string or null")
		}
	}
	if present(req.Config) && !isNull(req.Config) {
		c, err := parseEnvConfig(req.Config)
		if err != nil {
			return d, err
		}
		d.Config = c
	}
	if d.Config.Type == "" {
		d.Config.Type = "self_hosted"
	}
	if present(req.Scope) && !isNull(req.Scope) {
		var scope string
		if json.Unmarshal(req.Scope, &scope) != nil || (scope != "organization" && scope != "account") {
			return d, invalid("scope: want organization or account")
		}
		d.Scope = scope
	}
	if req.Metadata != nil {
		m, err := patchMetadata("metadata", d.Metadata, req.Metadata, !create)
		if err != nil {
			return d, err
		}
		d.Metadata = m
	}
	if d.Metadata == nil {
		d.Metadata = map[string]string{}
	}
	return d, nil
}

// CreateEnvironment creates an environment.
func (s *Service) CreateEnvironment(ctx context.Context, tenant string, req EnvironmentRequest) (Environment, error) {
	d, err := applyEnvironmentRequest(EnvironmentData{}, req, true)
	if err != nil {
		return Environment{}, err
	}
	b, err := json.Marshal(d)
	if err != nil {
		return Environment{}, err
	}
	e, err := s.Store.CreateManagedEnvironment(ctx, store.ManagedEnvironment{ID: newID("env"), Tenant: tenant, Data: b})
	if err != nil {
		return Environment{}, err
	}
	return renderEnvironment(e)
}

// GetEnvironment returns an environment.
func (s *Service) GetEnvironment(ctx context.Context, tenant, id string) (Environment, error) {
	e, err := s.Store.GetManagedEnvironment(ctx, tenant, id)
	if err != nil {
		return Environment{}, err
	}
	return renderEnvironment(e)
}

// UpdateEnvironment applies req (omitted fields are kept).
func (s *Service) UpdateEnvironment(ctx context.Context, tenant, id string, req EnvironmentRequest) (Environment, error) {
	cur, err := s.Store.GetManagedEnvironment(ctx, tenant, id)
	if err != nil {
		return Environment{}, err
	}
	if !cur.ArchivedAt.IsZero() {
		return Environment{}, invalid("environment %q is archived: archived environments cannot be updated", id)
	}
	var d EnvironmentData
	if err := json.Unmarshal(cur.Data, &d); err != nil {
		return Environment{}, fmt.Errorf("decode environment %s: %w", id, err)
	}
	d, err = applyEnvironmentRequest(d, req, false)
	if err != nil {
		return Environment{}, err
	}
	b, err := json.Marshal(d)
	if err != nil {
		return Environment{}, err
	}
	e, err := s.Store.UpdateManagedEnvironment(ctx, store.ManagedEnvironment{ID: id, Tenant: tenant, Data: b})
	if err != nil {
		return Environment{}, err
	}
	return renderEnvironment(e)
}

// ListEnvironments lists the tenant's environments, newest first.
func (s *Service) ListEnvironments(ctx context.Context, tenant string, q url.Values) (Page[Environment], error) {
	p, err := parseList(tenant, q)
	if err != nil {
		return Page[Environment]{}, err
	}
	limit := p.Limit
	p.Limit++
	rows, err := s.Store.ListManagedEnvironments(ctx, p)
	if err != nil {
		return Page[Environment]{}, err
	}
	out := Page[Environment]{Data: []Environment{}}
	for i, e := range rows {
		if i == limit {
			out.NextPage = encodeCursor(rows[i-1].CreatedAt, rows[i-1].ID)
			break
		}
		w, err := renderEnvironment(e)
		if err != nil {
			return Page[Environment]{}, err
		}
		out.Data = append(out.Data, w)
	}
	return out, nil
}

// ArchiveEnvironment archives an environment: new sessions cannot use it.
func (s *Service) ArchiveEnvironment(ctx context.Context, tenant, id string) (Environment, error) {
	e, err := s.Store.ArchiveManagedEnvironment(ctx, tenant, id, time.Time{})
	if err != nil {
		return Environment{}, err
	}
	return renderEnvironment(e)
}

// DeleteEnvironment deletes an environment. Sessions that named it keep
// its id.
func (s *Service) DeleteEnvironment(ctx context.Context, tenant, id string) (EnvironmentDeleted, error) {
	if err := s.Store.DeleteManagedEnvironment(ctx, tenant, id); err != nil {
		return EnvironmentDeleted{}, err
	}
	return EnvironmentDeleted{ID: id, Type: "environment_deleted"}, nil
}
