package admission

import (
	"sync"
	"time"
)

// ReasonTenant: the request's tenant is at its concurrency cap.
const ReasonTenant = "tenant"

// TenantLimiter caps the requests one tenant has in flight on this
// instance: synchronous chats (streaming or not) and run event streams,
// each holding one slot for its whole life. It never queues: a tenant at
// its cap is refused at once (the other tenants are unaffected), so one
// tenant cannot take every chat or stream slot of the instance.
//
// The zero value caps nothing. It is safe for concurrent use.
type TenantLimiter struct {
	// Default is the cap of every tenant not in Overrides; 0: no cap.
	Default int
	// Overrides replace Default for the tenants they name; 0: no cap.
	Overrides map[string]int
	// RetryAfter is the hint sent with a refusal. Defaults to 1s.
	RetryAfter time.Duration
	Metrics    *Metrics
	Log        *BurstLog

	mu     sync.Mutex
	counts map[string]int // tenants with something in flight only
}

// Max returns tenant's cap (0: none).
func (t *TenantLimiter) Max(tenant string) int {
	if t == nil {
		return 0
	}
	if n, ok := t.Overrides[tenant]; ok {
		return n
	}
	return t.Default
}

// Acquire takes one of tenant's slots for a request of kind what ("chat",
// "stream": the limit label of the refusal metric) or refuses with a
// *Rejected of ReasonTenant. release must be called exactly once when
// admitted (later calls do nothing). A nil *TenantLimiter admits all.
func (t *TenantLimiter) Acquire(tenant, what string) (release func(), err error) {
	if t == nil {
		return func() {}, nil
	}
	limit := t.Max(tenant)
	if limit <= 0 {
		return func() {}, nil
	}
	t.mu.Lock()
	if t.counts[tenant] >= limit {
		t.mu.Unlock()
		retry := t.RetryAfter
		if retry <= 0 {
			retry = time.Second
		}
		if t.Metrics != nil {
			t.Metrics.Rejected.WithLabelValues(what, ReasonTenant).Inc()
		}
		t.Log.refused(what+"/"+ReasonTenant+"/"+tenant, "limit", what, "reason", ReasonTenant, "tenant", tenant)
		return nil, &Rejected{Reason: ReasonTenant, RetryAfter: retry, What: what, Tenant: tenant, Limit: limit}
	}
	if t.counts == nil {
		t.counts = make(map[string]int)
	}
	t.counts[tenant]++
	t.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			t.mu.Lock()
			defer t.mu.Unlock()
			if t.counts[tenant] <= 1 {
				delete(t.counts, tenant) // the map holds active tenants only
				return
			}
			t.counts[tenant]--
		})
	}, nil
}

// InFlight returns how many slots tenant holds now.
func (t *TenantLimiter) InFlight(tenant string) int {
	if t == nil {
		return 0
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.counts[tenant]
}
