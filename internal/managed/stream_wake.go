package managed

import (
	"context"
	"sync"
	"time"

	"github.com/agentd/agentd/internal/events"
	"github.com/agentd/agentd/internal/store"
)

// A session's stream reads the store (the record) every poll interval;
// it wakes sooner when this process learns that something of the session
// happened: a turn was submitted here (Service.Wake, from Turns) or its
// current run stored events (the run event hub, Service.Hub: in-process,
// or across processes where the hub is shared). A wake only triggers the
// read; what is sent is always what the store holds, so a missed wake
// costs at most one poll interval. The hub's events are stored before they
// are published: those that continue what the stream sent are translated
// and sent at once, before the read (which then finds only the run's
// status and what the hub did not deliver), as /v1/runs streams send them.

// wakers are the streams waiting for a conversation's next turn.
type wakers struct {
	mu sync.Mutex
	m  map[string]map[chan struct{}]struct{}
}

func (w *wakers) add(conv string) (chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.m == nil {
		w.m = map[string]map[chan struct{}]struct{}{}
	}
	if w.m[conv] == nil {
		w.m[conv] = map[chan struct{}]struct{}{}
	}
	w.m[conv][ch] = struct{}{}
	return ch, func() {
		w.mu.Lock()
		defer w.mu.Unlock()
		delete(w.m[conv], ch)
		if len(w.m[conv]) == 0 {
			delete(w.m, conv)
		}
	}
}

// Wake wakes the streams of the session whose conversation is conv: a
// turn of it was just submitted.
func (s *Service) Wake(conv string) {
	s.wakes.mu.Lock()
	defer s.wakes.mu.Unlock()
	for ch := range s.wakes.m[conv] {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

// follower waits for the next thing a stream should read.
type follower struct {
	hub   events.Hub
	tick  <-chan time.Time
	woken chan struct{}

	run   string // the run whose hub events wake it
	evs   <-chan store.Event
	unsub func()
	// live are the hub's events of run received since the last take, in
	// the order published (after they were stored).
	live []store.Event
}

// take returns the hub events received since the last take.
func (f *follower) take() []store.Event {
	evs := f.live
	f.live = nil
	return evs
}

func (s *Service) follow(conv string, tick <-chan time.Time) (*follower, func()) {
	woken, done := s.wakes.add(conv)
	f := &follower{hub: s.Hub, tick: tick, woken: woken}
	return f, func() {
		done()
		if f.unsub != nil {
			f.unsub()
		}
	}
}

// watch subscribes to run's hub events ("": none) if it is not the run
// followed already; the events published before are not received.
func (f *follower) watch(run string) {
	if f.hub == nil || run == f.run {
		return
	}
	if f.unsub != nil {
		f.unsub()
		f.evs, f.unsub = nil, nil
	}
	f.run, f.live = run, nil
	if run != "" {
		f.evs, f.unsub = f.hub.Subscribe(run)
	}
}

// wait returns when run (the turn being followed, "" for none) may have
// new events, a turn may have been submitted, or the poll interval
// passed; false when ctx ended.
func (f *follower) wait(ctx context.Context, run string) bool {
	if f.hub != nil && run != f.run {
		f.watch(run)
		if run != "" {
			// Read once more now: what was stored before the
			// subscription is in the store, what comes after wakes it.
			return ctx.Err() == nil
		}
	}
	select {
	case <-ctx.Done():
		return false
	case <-f.tick:
	case <-f.woken:
	case ev := <-f.evs: // nil: never
		// Take what else arrived: one read takes it all.
		f.live = append(f.live, ev)
		for drained := false; !drained; {
			select {
			case ev := <-f.evs:
				f.live = append(f.live, ev)
			default:
				drained = true
			}
		}
	}
	return true
}

// pollInterval is how often a stream reads the store when nothing woke
// it: 100 ms, or 1 s with a hub (then a read is due only for what no
// wake announces: a turn submitted on another instance, a run claimed by
// a worker before its first event).
func (s *Service) pollInterval() time.Duration {
	if s.Hub != nil {
		return time.Second
	}
	return 100 * time.Millisecond
}
