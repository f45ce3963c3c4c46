package usagelog_test

import (
	"context"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/agentd/agentd/internal/store"
	"github.com/agentd/agentd/internal/store/postgres"
	"github.com/agentd/agentd/internal/store/postgres/pgtest"
	"github.com/agentd/agentd/internal/usagelog"
)

// benchStore is a migrated store of backend; postgres skips without
// AGENTD_TEST_POSTGRES_URL.
func benchStore(b testing.TB, backend string) store.Usage {
	b.Helper()
	if backend == "sqlite" {
		st, _ := newSQLite(b)
		return st
	}
	url := pgtest.Schema(b, pgtest.BaseURL(b), 0)
	st, err := postgres.Open(context.Background(), url)
	require.NoError(b, err)
	b.Cleanup(func() { _ = st.Close() })
	require.NoError(b, st.Migrate(context.Background()))
	return st
}

// appender is what a model call's accounting calls.
type appender interface {
	AppendUsage(ctx context.Context, r store.UsageRecord) error
}

// BenchmarkAppendUsage: rows/s from 64 concurrent callers, each row one
// AppendUsage call: directly on the store (one write transaction per row)
// and through the Writer (batches; the time includes the final Flush, so
// every row counted is in the database).
//
//	go test -run '^$' -bench AppendUsage -benchtime 20000x ./internal/usagelog
func BenchmarkAppendUsage(b *testing.B) {
	for _, backend := range []string{"sqlite", "postgres"} {
		for _, mode := range []string{"direct", "writer"} {
			b.Run(backend+"/"+mode, func(b *testing.B) {
				st := benchStore(b, backend)
				var a appender = st
				var w *usagelog.Writer
				if mode == "writer" {
					w = usagelog.New(st, usagelog.Options{})
					a = w
				}
				ctx := context.Background()
				var step atomic.Int64
				b.SetParallelism(max(1, 64/runtime.GOMAXPROCS(0))) // 64 callers
				b.ResetTimer()
				start := time.Now()
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						if err := a.AppendUsage(ctx, row("bench", int(step.Add(1)))); err != nil {
							b.Error(err)
							return
						}
					}
				})
				if w != nil {
					require.NoError(b, w.Close(ctx))
				}
				b.StopTimer()
				b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "rows/s")
			})
		}
	}
}

// TestBurstMeasurement reproduces the load test's burst: 10,000 model
// calls finish at once and each records its usage row with the loop's 5 s
// deadline, while 4,000 goroutines keep writing other rows, 10 per
// transaction (standing in for the chats' own writes: messages, steps).
// It logs rows lost and the time until all are written,
// directly on the store and through the Writer. Run with
//
//	AGENTD_USAGE_BURST=1 go test -run BurstMeasurement -v ./internal/usagelog
func TestBurstMeasurement(t *testing.T) {
	if testing.Short() || !burstEnabled() {
		t.Skip("set AGENTD_USAGE_BURST=1 to run the measurement")
	}
	for _, backend := range []string{"sqlite", "postgres"} {
		for _, mode := range []string{"direct", "writer"} {
			t.Run(backend+"/"+mode, func(t *testing.T) {
				st := benchStore(t, backend)
				var a appender = st
				var w *usagelog.Writer
				rec := &recording{Store: st}
				if mode == "writer" {
					w = usagelog.New(rec, usagelog.Options{})
					a = w
				}
				// Competing writes: other rows on the same store, like the
				// chats' checkpoints, for the duration of the burst.
				stopNoise := make(chan struct{})
				var noise sync.WaitGroup
				var noiseRows atomic.Int64
				noiseBatch := make([]store.UsageRecord, 10)
				for i := range noiseBatch {
					noiseBatch[i] = row("noise", 0)
				}
				for range 4000 {
					noise.Go(func() {
						for {
							select {
							case <-stopNoise:
								return
							default:
							}
							ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
							if st.AppendUsageBatch(ctx, noiseBatch) == nil {
								noiseRows.Add(int64(len(noiseBatch)))
							}
							cancel()
						}
					})
				}
				const calls = 10_000
				var lost, slowest atomic.Int64
				var wg sync.WaitGroup
				start := time.Now()
				for i := range calls {
					wg.Go(func() {
						ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
						defer cancel()
						t0 := time.Now()
						if err := a.AppendUsage(ctx, row("burst", i+1)); err != nil {
							lost.Add(1)
						}
						d := int64(time.Since(t0))
						for cur := slowest.Load(); d > cur && !slowest.CompareAndSwap(cur, d); cur = slowest.Load() {
						}
					})
				}
				wg.Wait()
				if w != nil {
					require.NoError(t, w.Close(context.Background()))
				}
				elapsed := time.Since(start)
				close(stopNoise)
				noise.Wait()
				got, err := st.SumUsage(context.Background(), store.UsageQuery{Tenant: "burst", GroupBy: store.UsageByAgent})
				require.NoError(t, err)
				var written int64
				for _, g := range got {
					written += g.Requests
				}
				require.Equal(t, calls-lost.Load(), written)
				txs := int(written)
				if w != nil {
					txs = len(rec.sizes())
				}
				t.Logf("%s/%s: %d calls, %d rows lost, slowest AppendUsage %v; %d written in %v with %d write transactions; %d competing rows written meanwhile",
					backend, mode, calls, lost.Load(), time.Duration(slowest.Load()).Round(time.Millisecond),
					written, elapsed.Round(time.Millisecond), txs, noiseRows.Load())
				if mode == "writer" {
					require.Zero(t, lost.Load(), "the writer loses nothing")
				}
			})
		}
	}
}

func burstEnabled() bool { return os.Getenv("AGENTD_USAGE_BURST") != "" }
