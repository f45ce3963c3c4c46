package config

import (
	"fmt"
	"maps"
	"math"
	"slices"
	"time"
)

// Defaults of budgets.
const (
	DefaultBudgetReservationTTL      = 15 * time.Minute
	DefaultBudgetAlertWebhookTimeout = 5 * time.Second
)

// DefaultBudgetAlertFractions are the shares of a budget at which an alert
// is raised.
func DefaultBudgetAlertFractions() []float64 { return []float64{0.5, 0.8, 1.0} }

// Budgets are spend limits in USD per tenant, API key and agent, per UTC
// day and per UTC month (docs/cost.md). A model call that could take a
// budget over its limit is refused. Every limit defaults to 0: none.
type Budgets struct {
	// Tenant applies to every tenant (with auth.mode none: the tenant
	// "default") not listed in Tenants. Defaults to no limits.
	Tenant BudgetLimit `yaml:"tenant"`
	// Key applies to every API key not listed in Keys (calls without a
	// key have no key budget). Defaults to no limits.
	Key BudgetLimit `yaml:"key"`
	// Agent applies to every agent not listed in Agents. Defaults to no
	// limits.
	Agent BudgetLimit `yaml:"agent"`
	// Tenants replace Tenant for the tenants they name; an entry is taken
	// whole (a limit left out is no limit). A map: file only. Defaults to
	// none.
	Tenants map[string]BudgetLimit `yaml:"tenants,omitempty"`
	// Keys replace Key for the API key ids they name ("key_…"). A map:
	// file only. Defaults to none.
	Keys map[string]BudgetLimit `yaml:"keys,omitempty"`
	// Agents replace Agent for the agents they name. A map: file only.
	// Defaults to none.
	Agents map[string]BudgetLimit `yaml:"agents,omitempty"`
	// AlertFractions are the shares of a budget (each in (0, 1]) whose
	// first crossing in a period raises an alert (metric, log, webhook).
	// An empty list ([]) raises none. A list: file only. Defaults to
	// [0.5, 0.8, 1.0].
	AlertFractions []float64 `yaml:"alert_fractions,omitempty"`
	// AlertWebhook is an http(s) URL that receives each alert as a JSON
	// POST (best effort). Defaults to empty: no webhook.
	AlertWebhook Secret `yaml:"alert_webhook"`
	// AlertWebhookTimeout bounds one webhook delivery. Defaults to 5s.
	AlertWebhookTimeout time.Duration `yaml:"alert_webhook_timeout"`
	// ReservationTTL is how long a model call's reservation holds budget
	// if its process dies before settling it; keep it above the longest
	// model call (providers.anthropic.request_timeout and retries).
	// Defaults to 15m.
	ReservationTTL time.Duration `yaml:"reservation_ttl"`
}

// BudgetLimit are the limits of one tenant, key or agent; 0 is no limit.
type BudgetLimit struct {
	// DailyUSD limits spend per UTC day. Defaults to 0: no limit.
	DailyUSD float64 `yaml:"daily_usd"`
	// MonthlyUSD limits spend per UTC calendar month. Defaults to 0: no
	// limit.
	MonthlyUSD float64 `yaml:"monthly_usd"`
}

// AnyBudget reports whether any budget (or an agent's max_cost_usd) is set.
func (c *Config) AnyBudget() bool {
	b := c.Budgets
	if b.Tenant != (BudgetLimit{}) || b.Key != (BudgetLimit{}) || b.Agent != (BudgetLimit{}) ||
		len(b.Tenants)+len(b.Keys)+len(b.Agents) > 0 {
		return true
	}
	for _, a := range c.Agents {
		if a.MaxCostUSD > 0 {
			return true
		}
	}
	return false
}

func (b *Budgets) applyDefaults() {
	if b.AlertFractions == nil {
		b.AlertFractions = DefaultBudgetAlertFractions()
	}
	setDefault(&b.AlertWebhookTimeout, DefaultBudgetAlertWebhookTimeout)
	setDefault(&b.ReservationTTL, DefaultBudgetReservationTTL)
}

// validUSD reports whether f is a usable amount of dollars (0: none).
func validUSD(f float64) bool { return f >= 0 && !math.IsNaN(f) && !math.IsInf(f, 0) }

// validateBudgets checks the budgets section and agents[].max_cost_usd.
func (c *Config) validateBudgets(v *validator) {
	check := func(path string, l BudgetLimit) {
		if !validUSD(l.DailyUSD) {
			v.add(path+".daily_usd", fmt.Sprintf("must be >= 0 USD (0: no limit), not %v", l.DailyUSD))
		}
		if !validUSD(l.MonthlyUSD) {
			v.add(path+".monthly_usd", fmt.Sprintf("must be >= 0 USD (0: no limit), not %v", l.MonthlyUSD))
		}
	}
	b := c.Budgets
	check("budgets.tenant", b.Tenant)
	check("budgets.key", b.Key)
	check("budgets.agent", b.Agent)
	for _, m := range []struct {
		path string
		m    map[string]BudgetLimit
	}{{"budgets.tenants", b.Tenants}, {"budgets.keys", b.Keys}, {"budgets.agents", b.Agents}} {
		for _, name := range slices.Sorted(maps.Keys(m.m)) {
			if name == "" {
				v.add(m.path, "a name must not be empty")
			}
			check(m.path+"."+name, m.m[name])
		}
	}
	for i, f := range b.AlertFractions {
		if !(f > 0 && f <= 1) {
			v.add(fmt.Sprintf("budgets.alert_fractions[%d]", i), fmt.Sprintf("must be in (0, 1], not %v", f))
		}
	}
	if u := b.AlertWebhook.Value(); u != "" {
		if !isHTTPURL(u) {
			v.add("budgets.alert_webhook", "must be an http:// or https:// URL")
		}
	}
	v.positive("budgets.alert_webhook_timeout", b.AlertWebhookTimeout)
	v.positive("budgets.reservation_ttl", b.ReservationTTL)
	for i, a := range c.Agents {
		if !validUSD(a.MaxCostUSD) {
			v.add(fmt.Sprintf("agents[%d].max_cost_usd", i), fmt.Sprintf("must be >= 0 USD (0: no limit), not %v", a.MaxCostUSD))
		}
	}
}
