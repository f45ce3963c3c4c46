package gateway

import "slices"

// Policy is what a tenant may call.
type Policy struct {
	// AllowModels lists the models (after aliases) the tenant may call;
	// empty: every model.
	AllowModels []string
	// FallbackModels maps a model (after aliases) to the models tried in
	// order when it fails before answering. Empty: no fallback, the
	// default (a client may depend on the exact model).
	FallbackModels map[string][]string
}

// allows reports whether the policy lets model be called.
func (p Policy) allows(model string) bool {
	return len(p.AllowModels) == 0 || slices.Contains(p.AllowModels, model)
}

// fallbacks are model's fallback models the policy allows: a fallback never
// calls a model the tenant may not use.
func (p Policy) fallbacks(model string) []string {
	fb := p.FallbackModels[model]
	if len(p.AllowModels) == 0 || len(fb) == 0 {
		return fb
	}
	out := make([]string, 0, len(fb))
	for _, m := range fb {
		if p.allows(m) {
			out = append(out, m)
		}
	}
	return out
}

// policy is tenant's policy.
func (h *Handler) policy(tenant string) Policy {
	if p, ok := h.cfg.Tenants[tenant]; ok {
		return p
	}
	return h.cfg.Default
}
