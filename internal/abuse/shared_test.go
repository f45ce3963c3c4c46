package abuse_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/agentd/agentd/internal/abuse"
	"github.com/agentd/agentd/internal/abuse/abuseredis"
	"github.com/agentd/agentd/internal/redis"
	"github.com/agentd/agentd/internal/redis/redistest"
)

// TestSharedThrottles: two instances sharing a Redis share their
// throttles and lifts (at the next Sync); with Redis down each throttles
// on its own, and requests never wait for it.
func TestSharedThrottles(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	c := newClock()
	newInstance := func() *abuse.Detector {
		rc := openClient(t, srv)
		// A generous timeout: the race detector on a busy machine is slow.
		d := abuse.New(abuse.Config{Shared: abuseredis.New(rc.Raw(), "test:"+t.Name()+":"), SharedTimeout: 2 * time.Second,
			ThrottleFor: 10 * time.Minute, Now: c.Now})
		t.Cleanup(d.Close)
		return d
	}
	a, b := newInstance(), newInstance()
	ctx := t.Context()

	// Flagged on a, refused on b after b's sync.
	_, dec := burst(t, a, "acme", "key_a", 1000)
	require.False(t, dec.Allowed)
	a.Close() // the throttle is published
	require.True(t, b.Allow(ctx, "acme", "key_b").Allowed)
	require.NoError(t, b.Sync(ctx))
	dec = b.Allow(ctx, "acme", "key_a")
	require.False(t, dec.Allowed)
	require.Equal(t, 10*time.Minute, dec.RetryAfter)
	require.True(t, b.Allow(ctx, "acme", "key_b").Allowed)
	require.Len(t, b.Throttled(), 1)

	// A tenant flagged by spend on one instance (a worker: queued runs
	// have no key) throttles the tenant's keys on the other.
	a.ObserveSpend(ctx, "globex", "", 5)
	a.Close()
	require.NoError(t, b.Sync(ctx))
	require.False(t, b.Allow(ctx, "globex", "key_g").Allowed)

	// Lifted on b, lifted on a after a's sync; a's own later flag is not
	// undone by the old lift.
	require.True(t, b.Lift(ctx, "key_a"))
	require.True(t, b.Allow(ctx, "acme", "key_a").Allowed)
	require.False(t, a.Allow(ctx, "acme", "key_a").Allowed)
	require.NoError(t, a.Sync(ctx))
	require.True(t, a.Allow(ctx, "acme", "key_a").Allowed)
	c.Add(time.Second)
	_, dec = burst(t, a, "acme", "key_a", 1000)
	require.False(t, dec.Allowed)
	a.Close()
	require.NoError(t, a.Sync(ctx))
	require.NoError(t, b.Sync(ctx))
	require.False(t, a.Allow(ctx, "acme", "key_a").Allowed)
	require.False(t, b.Allow(ctx, "acme", "key_a").Allowed)

	// A late publish of a throttle already lifted here is not taken up.
	_, dec = burst(t, b, "acme", "key_late", 1000)
	require.False(t, dec.Allowed)
	b.Close()
	c.Add(time.Second)
	require.True(t, b.Lift(ctx, "key_late"))
	old, err := json.Marshal(dec.Throttle)
	require.NoError(t, err)
	store := abuseredis.New(openClient(t, srv).Raw(), "test:"+t.Name()+":")
	require.NoError(t, store.Put(ctx, "key_late", old, time.Hour))
	require.NoError(t, b.Sync(ctx))
	require.True(t, b.Allow(ctx, "acme", "key_late").Allowed)
	require.NoError(t, a.Sync(ctx))
	require.False(t, a.Allow(ctx, "acme", "key_late").Allowed, "a never saw the lift: it takes the throttle")
	require.True(t, a.Lift(ctx, "key_late"))

	// Ended throttles leave the hash.
	c.Add(11 * time.Minute)
	require.NoError(t, a.Sync(ctx))
	c.Add(11 * time.Minute)
	require.NoError(t, a.Sync(ctx))
	n, err := redisHashLen(t, srv, "test:"+t.Name()+":throttled")
	require.NoError(t, err)
	require.Zero(t, n)

	// Redis down: throttles are per instance, nothing blocks.
	srv.Stop()
	_, dec = burst(t, a, "acme", "key_z", 1000)
	require.False(t, dec.Allowed)
	a.Close()
	require.Error(t, b.Sync(ctx))
	require.True(t, b.Allow(ctx, "acme", "key_z").Allowed)
	require.False(t, a.Allow(ctx, "acme", "key_z").Allowed)
	require.True(t, a.Lift(ctx, "key_z"), "lifted here even though Redis cannot be told")
}

func openClient(t *testing.T, srv *redistest.Server) *redis.Client {
	t.Helper()
	rc, err := redis.Open(srv.URL(), redis.Options{Timeout: 2 * time.Second, DialTimeout: 2 * time.Second})
	require.NoError(t, err)
	t.Cleanup(func() { _ = rc.Close() })
	return rc
}

func redisHashLen(t *testing.T, srv *redistest.Server, key string) (int64, error) {
	t.Helper()
	rc, err := redis.Open(srv.URL(), redis.Options{Timeout: time.Second})
	require.NoError(t, err)
	defer rc.Close()
	return rc.Raw().HLen(t.Context(), key).Result()
}
