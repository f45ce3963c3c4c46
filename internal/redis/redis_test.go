package redis_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/agentd/agentd/internal/redis"
	"github.com/agentd/agentd/internal/redis/redistest"
	"github.com/agentd/agentd/internal/testtally"
)

const testTimeout = 200 * time.Millisecond

var quiet sync.Once

func open(t *testing.T, url string) *redis.Client {
	t.Helper()
	quiet.Do(func() { redis.RouteLibraryLogs(slog.New(slog.DiscardHandler)) })
	c, err := redis.Open(url, redis.Options{PoolSize: 4, DialTimeout: 500 * time.Millisecond, Timeout: testTimeout})
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func TestOpenRejectsBadURLsWithoutLeakingThem(t *testing.T) {
	t.Parallel()
	for _, u := range []string{
		"http://user:s3cret@localhost:6379",
		"redis://user:s3cret@",
		"redis://user:s3cret@local host:6379/0",
		"redis://user:s3cret@localhost:6379/notadb",
		"redis://user:s3cret@localhost:6379/0?pool_size=x",
		"::s3cret",
	} {
		_, err := redis.Open(u, redis.Options{})
		require.Error(t, err, u)
		require.NotContains(t, err.Error(), "s3cret", u)
	}
}

func TestOpenMakesNoNetworkCall(t *testing.T) {
	t.Parallel()
	// Nothing listens on port 1.
	c := open(t, "redis://127.0.0.1:1/0")
	state, lastErr, at := c.Status()
	require.Equal(t, redis.StateDown, state)
	require.Equal(t, "not checked yet", lastErr)
	require.True(t, at.IsZero())
	require.Equal(t, "127.0.0.1:1", c.Addr())
	require.Equal(t, testTimeout, c.Timeout())

	start := time.Now()
	err := c.Check(context.Background())
	require.Error(t, err)
	require.Less(t, time.Since(start), time.Second)
	state, lastErr, at = c.Status()
	require.Equal(t, redis.StateDown, state)
	require.NotEmpty(t, lastErr)
	require.False(t, at.IsZero())
}

func TestGetSetRoundTripAndTTL(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	c := open(t, srv.URL())
	ctx := context.Background()

	_, ok, err := c.Get(ctx, "k")
	require.NoError(t, err)
	require.False(t, ok)

	require.NoError(t, c.Set(ctx, "k", []byte("v1"), 0))
	v, ok, err := c.Get(ctx, "k")
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, "v1", string(v))

	require.NoError(t, c.Set(ctx, "short", []byte("v2"), 100*time.Millisecond))
	v, ok, err = c.Get(ctx, "short")
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, "v2", string(v))
	require.Eventually(t, func() bool {
		_, ok, err := c.Get(ctx, "short")
		return err == nil && !ok
	}, 2*time.Second, 20*time.Millisecond, "expired by Redis")

	require.NoError(t, c.Ping(ctx))
	require.NoError(t, c.Check(ctx))
	state, lastErr, at := c.Status()
	require.Equal(t, redis.StateOK, state)
	require.Empty(t, lastErr)
	require.WithinDuration(t, time.Now(), at, time.Second)
	require.Positive(t, c.Latency())
}

// TestOutageAndRecovery kills Redis under a client in use: commands fail
// fast (within the timeout) and the status says down; once Redis is back
// on the same port, the client works again by itself.
func TestOutageAndRecovery(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	c := open(t, srv.URL())
	ctx := context.Background()
	require.NoError(t, c.Set(ctx, "k", []byte("v"), 0))
	require.NoError(t, c.Check(ctx))

	srv.Stop()
	for i := range 20 {
		start := time.Now()
		_, _, err := c.Get(ctx, "k")
		require.Error(t, err, "call %d", i)
		require.Less(t, time.Since(start), testTimeout+150*time.Millisecond, "call %d bounded by the timeout", i)
		start = time.Now()
		require.Error(t, c.Set(ctx, "k", []byte("v"), 0))
		require.Less(t, time.Since(start), testTimeout+150*time.Millisecond, "call %d bounded by the timeout", i)
	}
	require.Error(t, c.Ping(ctx))
	require.Error(t, c.Check(ctx))
	state, lastErr, _ := c.Status()
	require.Equal(t, redis.StateDown, state)
	require.NotEmpty(t, lastErr)

	srv.Restart() // empty: nothing was persisted
	require.Eventually(t, func() bool {
		if c.Set(ctx, "k2", []byte("back"), 0) != nil {
			return false
		}
		v, ok, err := c.Get(ctx, "k2")
		return err == nil && ok && string(v) == "back"
	}, 5*time.Second, 20*time.Millisecond, "the client reconnects by itself")
	require.NoError(t, c.Check(ctx))
	state, lastErr, _ = c.Status()
	require.Equal(t, redis.StateOK, state)
	require.Empty(t, lastErr)
}

func TestRunMaintainsStatus(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	c := open(t, srv.URL())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx, 20*time.Millisecond) }()
	defer func() {
		cancel()
		require.NoError(t, <-done)
	}()
	stateIs := func(want string) func() bool {
		return func() bool { s, _, _ := c.Status(); return s == want }
	}
	require.Eventually(t, stateIs(redis.StateOK), 2*time.Second, 10*time.Millisecond)
	srv.Stop()
	require.Eventually(t, stateIs(redis.StateDown), 3*time.Second, 10*time.Millisecond)
	srv.Restart()
	require.Eventually(t, stateIs(redis.StateOK), 5*time.Second, 10*time.Millisecond)
}

// TestSharedRedis runs against the machine's Redis when
// AGENTD_TEST_REDIS_URL is set, under a key prefix of its own.
func TestSharedRedis(t *testing.T) {
	t.Parallel()
	url := os.Getenv("AGENTD_TEST_REDIS_URL")
	if url == "" {
		t.Skip("AGENTD_TEST_REDIS_URL not set")
	}
	testtally.Record(t, "redis")
	a, b := open(t, url), open(t, url)
	ctx := context.Background()
	prefix := fmt.Sprintf("agentd:test:%s:%d:", strings.ReplaceAll(t.Name(), "/", "_"), time.Now().UnixNano())
	t.Cleanup(func() { _ = a.Raw().Del(context.Background(), prefix+"k").Err() })
	require.NoError(t, a.Check(ctx))
	require.NoError(t, a.Set(ctx, prefix+"k", []byte("shared"), time.Minute))
	v, ok, err := b.Get(ctx, prefix+"k")
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, "shared", string(v))
}

// server.Health's Redis Pinger.
var _ interface{ Ping(context.Context) error } = (*redis.Client)(nil)
