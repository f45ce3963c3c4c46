package events

import (
	"context"
	"fmt"
	"time"

	"github.com/agentd/agentd/internal/store"
)

// EventReader reads stored events.
type EventReader interface {
	ListEvents(ctx context.Context, runID string, afterSeq int64, limit int) ([]store.Event, error)
}

// FollowOptions tune Follow.
type FollowOptions struct {
	// Terminal reports whether an event ends the stream. Defaults to
	// types "done" and "error".
	Terminal func(store.Event) bool
	// Finished reports whether the run is over, for followers that start
	// after its last event. Nil: never.
	Finished func(ctx context.Context) (bool, error)
	// Poll is how often the store is read when no live event arrives (the
	// backstop for lost notifications). Defaults to 1s.
	Poll time.Duration
	// GapPoll is how often the store is read while a live event is held
	// back waiting for an earlier one. Defaults to 100ms.
	GapPoll time.Duration
}

const pageSize = 500

// Follow sends the run's events with seq > after to send, each exactly
// once and in seq order, until a terminal event was sent (nil), the run is
// finished and nothing is left (nil), send fails, or ctx ends.
func Follow(ctx context.Context, hub Hub, r EventReader, runID string, after int64, send func(store.Event) error, o FollowOptions) error {
	if o.Terminal == nil {
		o.Terminal = func(ev store.Event) bool { return ev.Type == "done" || ev.Type == "error" }
	}
	if o.Poll <= 0 {
		o.Poll = time.Second
	}
	if o.GapPoll <= 0 {
		o.GapPoll = 100 * time.Millisecond
	}
	// Subscribe before reading the store, so nothing published in between
	// is missed.
	live, unsub := hub.Subscribe(runID)
	defer unsub()

	last := after
	held := make(map[int64]store.Event)
	ended := false
	emit := func(ev store.Event) error {
		if err := send(ev); err != nil {
			return err
		}
		last = ev.Seq
		ended = o.Terminal(ev)
		return nil
	}
	drainHeld := func() error {
		for !ended {
			ev, ok := held[last+1]
			if !ok {
				break
			}
			delete(held, ev.Seq)
			if err := emit(ev); err != nil {
				return err
			}
		}
		for seq := range held {
			if seq <= last {
				delete(held, seq)
			}
		}
		return nil
	}
	readStore := func() (int, error) {
		n := 0
		for !ended {
			evs, err := r.ListEvents(ctx, runID, last, pageSize)
			if err != nil {
				return n, fmt.Errorf("read events of run %s: %w", runID, err)
			}
			progressed := false
			for _, ev := range evs {
				if ev.Seq != last+1 || ended {
					break
				}
				if err := emit(ev); err != nil {
					return n, err
				}
				n++
				progressed = true
			}
			// A short page is the end; a full page that did not continue
			// the sequence would only be read again.
			if len(evs) < pageSize || !progressed {
				break
			}
		}
		return n, drainHeld()
	}

	if _, err := readStore(); err != nil || ended {
		return err
	}
	timer := time.NewTimer(o.Poll)
	defer timer.Stop()
	// gapArmed: the timer is set to GapPoll for a held-back event; live
	// events arriving meanwhile must not push it further out.
	gapArmed := false
	for !ended {
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case ev := <-live:
			if ev.Type == "" {
				// A hint (the event was too large to carry): read it.
				if _, err := readStore(); err != nil || ended {
					return err
				}
				continue
			}
			if ev.Seq <= last {
				continue
			}
			held[ev.Seq] = ev
			if err := drainHeld(); err != nil {
				return err
			}
			if len(held) > 0 && !gapArmed {
				resetTimer(timer, o.GapPoll)
				gapArmed = true
			}
		case <-timer.C:
			gapArmed = false
			n, err := readStore()
			if err != nil || ended {
				return err
			}
			if n == 0 && len(held) == 0 && o.Finished != nil {
				done, err := o.Finished(ctx)
				if err != nil {
					return err
				}
				if done {
					// The final status is written just before the last
					// event is stored: give it a moment to land.
					for range 10 {
						if _, err := readStore(); err != nil || ended {
							return err
						}
						select {
						case <-ctx.Done():
							return context.Cause(ctx)
						case <-time.After(50 * time.Millisecond):
						}
					}
					return nil
				}
			}
			if len(held) > 0 {
				timer.Reset(o.GapPoll)
				gapArmed = true
			} else {
				timer.Reset(o.Poll)
			}
		}
	}
	return nil
}

func resetTimer(t *time.Timer, d time.Duration) {
	t.Stop()
	t.Reset(d)
}
