package managed

import "maps"

// SessionWebhook is the webhook of a session's run (its input's "webhook",
// set by Turns) and of a queued session.* event: not a URL but "the
// endpoint of the run's tenant", which WebhookDeliverer looks up in
// WebhookEndpoints when it delivers. So a job queued before the
// configuration changed goes to the tenant's endpoint as configured when
// it is delivered, no run or job row holds the endpoint's URL (a secret),
// and a run's own webhook can never be taken for a session's: /v1/runs
// takes only http(s) URLs.
const SessionWebhook = "managed:session-webhook"

// WebhookEndpoint is where a tenant's session webhooks go, and the key
// that signs them ("whsec_<base64>").
type WebhookEndpoint struct {
	URL, Key string
}

// WebhookEndpoints is the one lookup of the sessions' webhook endpoints
// (config managed.webhook_url and managed.tenants): a tenant's own entry,
// else the deployment's. Turns, Service.ArchiveSession and
// WebhookDeliverer all ask it. A nil *WebhookEndpoints has none.
type WebhookEndpoints struct {
	def     WebhookEndpoint
	tenants map[string]WebhookEndpoint
	urls    map[string]bool // every endpoint's URL
}

// NewWebhookEndpoints returns the lookup of def, the endpoint of tenants
// not in tenants, and tenants' own (an entry without a URL: that tenant's
// sessions send none).
func NewWebhookEndpoints(def WebhookEndpoint, tenants map[string]WebhookEndpoint) *WebhookEndpoints {
	e := &WebhookEndpoints{def: def, tenants: maps.Clone(tenants), urls: map[string]bool{}}
	for ep := range maps.Values(tenants) {
		e.urls[ep.URL] = true
	}
	e.urls[def.URL] = true
	delete(e.urls, "") // no URL: no endpoint
	return e
}

// For is the endpoint of tenant's sessions; false: they send no webhooks.
func (e *WebhookEndpoints) For(tenant string) (WebhookEndpoint, bool) {
	if e == nil {
		return WebhookEndpoint{}, false
	}
	ep, ok := e.tenants[tenant]
	if !ok {
		ep = e.def
	}
	return ep, ep.URL != ""
}

// isEndpoint reports whether url is some tenant's endpoint (or the
// deployment's).
func (e *WebhookEndpoints) isEndpoint(url string) bool {
	return e != nil && e.urls[url]
}
