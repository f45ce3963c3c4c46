package abuse

// Throttles shared between instances (through Redis: package abuseredis):
// counters and baselines stay in each instance (each sees its share of a
// key's traffic, so the ratio holds), but a throttle set, or lifted, on one
// instance reaches every instance within SyncEvery. The shared map holds a
// subject id → its throttle as JSON, or a lift marker. Requests never wait
// for Redis: Allow reads memory only; flags are published in the background
// and Sync runs on a ticker. On an error the instance keeps its own
// throttles (per instance, as without Redis) and tries again at the next
// sync.

import (
	"context"
	"encoding/json"
	"fmt"
	"time"
)

// Defaults of the sharing settings of Config.
const (
	DefaultSharedTimeout = 100 * time.Millisecond
	DefaultSyncEvery     = 2 * time.Second
)

// Shared is a map shared by the instances (abuseredis.Store in Redis).
type Shared interface {
	// Put sets field to value; the whole map may expire ttl after the
	// last Put.
	Put(ctx context.Context, field string, value []byte, ttl time.Duration) error
	// All returns every field and its value.
	All(ctx context.Context) (map[string]string, error)
	// DeleteIf deletes field when its value is still value.
	DeleteIf(ctx context.Context, field, value string) error
}

// shared is an entry of the hash: a throttle, or a lift marker (LiftedAt
// set: throttles of the subject flagged at or before it are lifted).
type shared struct {
	Throttle
	LiftedAt time.Time `json:"lifted_at,omitzero"`
}

// liftTimeout bounds publishing a lift: an operator's rare request, worth
// waiting longer for than a request's flag.
const liftTimeout = time.Second

// redisCtx bounds one Redis call (by SharedTimeout, or longer when atLeast is
// longer); a canceled request must not look like a Redis failure.
func (d *Detector) redisCtx(ctx context.Context, atLeast time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), max(d.cfg.SharedTimeout, atLeast))
}

// publish writes e to the shared map, which expires when nothing has been
// written for twice ThrottleFor.
func (d *Detector) publish(ctx context.Context, e shared) error {
	var atLeast time.Duration
	if !e.LiftedAt.IsZero() {
		atLeast = liftTimeout
	}
	val, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("encode: %w", err)
	}
	rctx, cancel := d.redisCtx(ctx, atLeast)
	defer cancel()
	err = d.cfg.Shared.Put(rctx, e.Subject, val, 2*d.cfg.ThrottleFor)
	d.redisResult(ctx, err)
	return err
}

// publishAsync publishes a new throttle without holding up the request.
func (d *Detector) publishAsync(ctx context.Context, t Throttle) {
	d.sending.Add(1)
	go func() {
		defer d.sending.Done()
		_ = d.publish(ctx, shared{Throttle: t}) // logged by redisResult
	}()
}

// redisResult logs Redis going down and coming back (not every error).
func (d *Detector) redisResult(ctx context.Context, err error) {
	d.mu.Lock()
	was := d.redisDown
	d.redisDown = err != nil
	d.mu.Unlock()
	switch {
	case err != nil && !was:
		d.cfg.Log.WarnContext(ctx, "abuse: Redis failed; throttles are per instance until it answers", "err", err)
	case err == nil && was:
		d.cfg.Log.InfoContext(ctx, "abuse: Redis answers again; throttles are shared")
	}
}

// Sync applies the throttles and lifts other instances published, and
// removes entries that have ended. Run calls it every SyncEvery; without
// Config.Shared it does nothing.
func (d *Detector) Sync(ctx context.Context) error {
	if d == nil || d.cfg.Shared == nil {
		return nil
	}
	rctx, cancel := d.redisCtx(ctx, 0)
	defer cancel()
	all, err := d.cfg.Shared.All(rctx)
	d.redisResult(ctx, err)
	if err != nil {
		return fmt.Errorf("abuse: read shared throttles: %w", err)
	}
	now := d.cfg.Now()
	var stale []string
	d.mu.Lock()
	for field, raw := range all {
		var e shared
		if json.Unmarshal([]byte(raw), &e) != nil || e.Subject != field {
			stale = append(stale, field, raw)
			continue
		}
		sub := subject{e.Tenant, e.KeyID}
		s := d.subjects[sub]
		switch {
		case !e.LiftedAt.IsZero():
			if now.Sub(e.LiftedAt) > d.cfg.ThrottleFor {
				stale = append(stale, field, raw) // every throttle it lifts has ended
			} else if s != nil && now.Before(s.throttle.Until) && !s.throttle.FlaggedAt.After(e.LiftedAt) {
				d.liftLocked(s, now, e.LiftedAt)
			}
		case !now.Before(e.Until):
			stale = append(stale, field, raw)
		case s == nil:
			s = &state{start: now, seen: now}
			d.subjects[sub] = s
			d.throttleLocked(s, e.Throttle)
		case s.throttle.Until.Before(e.Until) && e.FlaggedAt.After(s.liftedAt):
			// Not a throttle lifted here already (a late publish).
			d.throttleLocked(s, e.Throttle)
		}
	}
	d.mu.Unlock()
	for i := 0; i < len(stale); i += 2 {
		rctx, cancel := d.redisCtx(ctx, 0)
		err := d.cfg.Shared.DeleteIf(rctx, stale[i], stale[i+1])
		cancel()
		if err != nil {
			return fmt.Errorf("abuse: remove an ended throttle: %w", err)
		}
	}
	return nil
}

// Run syncs with the other instances every SyncEvery until ctx ends;
// without Config.Shared it returns at once. Errors are logged (once per outage).
func (d *Detector) Run(ctx context.Context) error {
	if d == nil || d.cfg.Shared == nil {
		return nil
	}
	t := time.NewTicker(d.cfg.SyncEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			_ = d.Sync(ctx) // redisResult logs outages
		}
	}
}
