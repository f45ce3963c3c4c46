package run

import (
	"context"
	"log/slog"
	"time"

	"github.com/agentd/agentd/internal/observe"
)

// ExpiryStore deletes expired conversations.
type ExpiryStore interface {
	DeleteExpiredConversations(ctx context.Context, now time.Time) (int, error)
}

// Sweeper deletes expired conversations every Interval until its context
// ends.
type Sweeper struct {
	Store    ExpiryStore
	Interval time.Duration
	Log      *slog.Logger
	Metrics  *observe.Metrics
}

// Run sweeps until ctx is done; it returns nil then.
func (s *Sweeper) Run(ctx context.Context) error {
	return every(ctx, s.Interval, s.SweepOnce)
}

// every calls fn at once and then every interval until ctx is done; it
// returns nil then (the sweepers' loop).
func every(ctx context.Context, interval time.Duration, fn func(context.Context)) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		fn(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// SweepOnce deletes what has expired now.
func (s *Sweeper) SweepOnce(ctx context.Context) {
	n, err := s.Store.DeleteExpiredConversations(ctx, time.Now().UTC())
	if err != nil {
		if ctx.Err() == nil {
			s.Log.WarnContext(ctx, "sweep expired conversations", "err", err)
		}
		return
	}
	s.Metrics.AddSwept(n)
	if n > 0 {
		s.Log.InfoContext(ctx, "swept expired conversations", "deleted", n)
	}
}
