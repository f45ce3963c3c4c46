// Package events fans run events out to the clients following them, in the
// same process (embedded tier) or across processes (PostgreSQL
// LISTEN/NOTIFY on the cluster tier).
//
// A Hub only carries live events; the store holds the record. Followers
// combine both (see Follow): they subscribe, replay what is stored, then
// take live events in seq order, reading the store again to fill any gap,
// so a client sees every event exactly once and in order.
package events

import (
	"context"
	"sync"

	"github.com/agentd/agentd/internal/store"
)

// Hub publishes live events and delivers them to subscribers of a run.
type Hub interface {
	// Publish hands stored events of one run, in seq order, to the
	// subscribers of that run. It never blocks on a slow subscriber (one
	// that falls behind loses live events and fills the gap from the
	// store), and never fails: live delivery is best effort, the store is
	// the record.
	Publish(ctx context.Context, evs []store.Event)
	// Subscribe returns a channel of the run's live events and a function
	// that ends the subscription.
	Subscribe(runID string) (<-chan store.Event, func())
}

// subscriberBuffer is how many live events a subscriber may lag behind.
const subscriberBuffer = 256

// Local is an in-process Hub.
type Local struct {
	mu   sync.Mutex
	subs map[string]map[chan store.Event]struct{}
}

// NewLocal returns an in-process hub.
func NewLocal() *Local {
	return &Local{subs: make(map[string]map[chan store.Event]struct{})}
}

// Publish implements Hub.
func (h *Local) Publish(_ context.Context, evs []store.Event) { h.deliver(evs) }

func (h *Local) deliver(evs []store.Event) {
	if len(evs) == 0 {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for ch := range h.subs[evs[0].RunID] {
		for _, ev := range evs {
			select {
			case ch <- ev:
			default: // lagging: it reads the gap from the store
			}
		}
	}
}

// Subscribe implements Hub.
func (h *Local) Subscribe(runID string) (<-chan store.Event, func()) {
	ch := make(chan store.Event, subscriberBuffer)
	h.mu.Lock()
	if h.subs[runID] == nil {
		h.subs[runID] = make(map[chan store.Event]struct{})
	}
	h.subs[runID][ch] = struct{}{}
	h.mu.Unlock()
	var once sync.Once
	return ch, func() {
		once.Do(func() {
			h.mu.Lock()
			delete(h.subs[runID], ch)
			if len(h.subs[runID]) == 0 {
				delete(h.subs, runID)
			}
			h.mu.Unlock()
		})
	}
}

// Subscribers counts the runs with at least one subscriber (tests, metrics).
func (h *Local) Subscribers() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.subs)
}
