package budget_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/require"

	"github.com/agentd/agentd/internal/budget"
	"github.com/agentd/agentd/internal/config"
	"github.com/agentd/agentd/internal/money"
	"github.com/agentd/agentd/internal/observe"
	"github.com/agentd/agentd/internal/store"
	"github.com/agentd/agentd/internal/store/postgres"
	"github.com/agentd/agentd/internal/store/postgres/pgtest"
	"github.com/agentd/agentd/internal/store/sqlite"
)

// budgetStore is a migrated store of a backend.
type budgetStore interface {
	store.Budgets
	Migrate(ctx context.Context) error
	Close() error
}

// twoInstances returns two stores on one database, as two agentd
// instances would open it.
func twoInstances(t *testing.T, backend string) (store.Budgets, store.Budgets) {
	t.Helper()
	ctx := t.Context()
	var open func() budgetStore
	switch backend {
	case "sqlite":
		path := filepath.Join(t.TempDir(), "agentd.db")
		open = func() budgetStore {
			s, err := sqlite.Open(ctx, path)
			require.NoError(t, err)
			return s
		}
	case "postgres":
		u := pgtest.Schema(t, pgtest.BaseURL(t), 30)
		open = func() budgetStore {
			s, err := postgres.Open(ctx, u)
			require.NoError(t, err)
			return s
		}
	}
	a := open()
	t.Cleanup(func() { _ = a.Close() })
	require.NoError(t, a.Migrate(ctx))
	b := open()
	t.Cleanup(func() { _ = b.Close() })
	return a, b
}

// clock is a settable time.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

// TestRaceForTheLastDollar: 50 concurrent calls through two instances
// race for the last dollar of a tenant's daily budget. Exactly the calls
// that fit are granted, the spend never passes the budget, and every other
// call is refused with the tenant's ExceededError.
func TestRaceForTheLastDollar(t *testing.T) {
	pgtest.ForEachBackend(t, func(t *testing.T, backend string) {
		ctx := t.Context()
		s1, s2 := twoInstances(t, backend)
		cfg := config.Budgets{Tenant: config.BudgetLimit{DailyUSD: 10}}
		e1 := budget.New(cfg, s1, nil, observe.NewMetrics("test"), nil)
		e2 := budget.New(cfg, s2, nil, observe.NewMetrics("test"), nil)
		subject := budget.Subject{Tenant: "acme", Agent: "demo", Run: "run_1"}

		// $9 spent already: one dollar left.
		r, err := e1.Reserve(ctx, subject, money.FromUSD(9))
		require.NoError(t, err)
		r.Settle(ctx, money.FromUSD(9))

		const calls, reservation = 50, 0.3
		var granted, refused atomic.Int32
		var wg sync.WaitGroup
		start := make(chan struct{})
		errs := make(chan error, calls)
		for i := range calls {
			wg.Add(1)
			go func() {
				defer wg.Done()
				e := e1
				if i%2 == 1 {
					e = e2
				}
				<-start
				r, err := e.Reserve(ctx, subject, money.FromUSD(reservation))
				var ex *budget.ExceededError
				switch {
				case errors.As(err, &ex):
					refused.Add(1)
					if ex.Scope != budget.ScopeTenant || ex.ID != "acme" || ex.Period != budget.PeriodDay ||
						ex.RetryAfter <= 0 || ex.RetryAfter > 24*time.Hour || !errors.Is(err, budget.ErrExceeded) {
						errs <- err
					}
				case err != nil:
					errs <- err
				default:
					granted.Add(1)
					time.Sleep(5 * time.Millisecond)          // the model call
					r.Settle(ctx, money.FromUSD(reservation)) // it cost its worst case
				}
			}()
		}
		close(start)
		wg.Wait()
		close(errs)
		for err := range errs {
			require.NoError(t, err)
		}
		// 9 + 3 × 0.3 = 9.9: a fourth call would need 10.2.
		require.Equal(t, int32(3), granted.Load(), "granted calls")
		require.Equal(t, int32(calls-3), refused.Load(), "refused calls")

		// The store's spend: never more than the budget (the bound is one
		// call's reservation over it; with actual <= reserved it is 0).
		cs, err := s1.SettleBudget(ctx, store.SettleBudgetParams{ReservationID: "probe", Limits: []store.BudgetLimit{{
			BudgetCounterKey: store.BudgetCounterKey{Scope: "tenant", Subject: "acme", Period: "d:" + time.Now().UTC().Format("2006-01-02")},
			LimitUSD:         10 * money.PerUSD, ExpiresAt: time.Now().Add(time.Hour),
		}}, Now: time.Now()})
		require.NoError(t, err)
		require.Equal(t, money.FromUSD(9.9), cs[0].SpentUSD)
		require.LessOrEqual(t, cs[0].SpentUSD, money.FromUSD(10+reservation))
		require.Equal(t, money.FromUSD(0), cs[0].ReservedUSD, "every reservation settled")
	})
}

func TestSettleReleasesTheDifference(t *testing.T) {
	pgtest.ForEachBackend(t, func(t *testing.T, backend string) {
		ctx := t.Context()
		s1, _ := twoInstances(t, backend)
		e := budget.New(config.Budgets{Agents: map[string]config.BudgetLimit{"demo": {MonthlyUSD: 1}}}, s1, nil, nil, nil)
		s := budget.Subject{Tenant: "acme", Agent: "demo"}

		r, err := e.Reserve(ctx, s, money.FromUSD(0.8))
		require.NoError(t, err)
		_, err = e.Reserve(ctx, s, money.FromUSD(0.5))
		ex, ok := budget.AsExceeded(err)
		require.True(t, ok, "%v", err)
		require.Equal(t, budget.ScopeAgent, ex.Scope)
		require.Equal(t, budget.PeriodMonth, ex.Period)
		require.Equal(t, money.FromUSD(0.8), ex.SpentUSD, "spent or reserved")
		require.Contains(t, ex.Error(), `agent "demo" monthly budget`)

		r.Settle(ctx, money.FromUSD(0.1))
		r.Settle(ctx, money.FromUSD(0.1)) // a second settle is a no-op
		r2, err := e.Reserve(ctx, s, money.FromUSD(0.5))
		require.NoError(t, err, "settling released 0.7")
		r2.Settle(ctx, money.FromUSD(0.5))
		_, err = e.Reserve(ctx, s, money.FromUSD(0.5))
		require.ErrorIs(t, err, budget.ErrExceeded, "0.6 spent: 0.5 more does not fit")
		// Other agents have no budget.
		r3, err := e.Reserve(ctx, budget.Subject{Tenant: "acme", Agent: "other"}, money.FromUSD(100))
		require.NoError(t, err)
		r3.Settle(ctx, money.FromUSD(100))
	})
}

// A process that dies between reserve and settle holds the budget only
// until its reservation expires.
func TestExpiredReservationsAreReleased(t *testing.T) {
	pgtest.ForEachBackend(t, func(t *testing.T, backend string) {
		ctx := t.Context()
		s1, s2 := twoInstances(t, backend)
		clk := &clock{t: time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)}
		cfg := config.Budgets{Key: config.BudgetLimit{DailyUSD: 1}, ReservationTTL: time.Minute}
		dead := budget.New(cfg, s1, nil, nil, nil)
		dead.NowFunc = clk.Now
		live := budget.New(cfg, s2, nil, nil, nil)
		live.NowFunc = clk.Now
		s := budget.Subject{Tenant: "acme", Key: "key_1"}

		_, err := dead.Reserve(ctx, s, money.FromUSD(1)) // never settled: its process dies
		require.NoError(t, err)
		_, err = live.Reserve(ctx, s, money.FromUSD(0.5))
		require.ErrorIs(t, err, budget.ErrExceeded)

		clk.Add(61 * time.Second)
		r, err := live.Reserve(ctx, s, money.FromUSD(0.5))
		require.NoError(t, err, "the expired reservation no longer counts")
		r.Settle(ctx, money.FromUSD(0.5))
		// Calls without a key have no key budget.
		_, err = live.Reserve(ctx, budget.Subject{Tenant: "acme"}, money.FromUSD(5))
		require.NoError(t, err)
	})
}

// Alerts fire once per budget, period and fraction, across instances, and
// the webhook receives each.
func TestAlertsFireOncePerFraction(t *testing.T) {
	pgtest.ForEachBackend(t, func(t *testing.T, backend string) {
		ctx := t.Context()
		s1, s2 := twoInstances(t, backend)
		var mu sync.Mutex
		var got []budget.Alert
		hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			var a budget.Alert
			if err := json.NewDecoder(r.Body).Decode(&a); err == nil {
				mu.Lock()
				got = append(got, a)
				mu.Unlock()
			}
		}))
		t.Cleanup(hook.Close)
		cfg := config.Budgets{Tenant: config.BudgetLimit{DailyUSD: 1}, AlertFractions: []float64{0.5, 0.8, 1},
			AlertWebhook: config.Secret(hook.URL)}
		m1, m2 := observe.NewMetrics("test"), observe.NewMetrics("test")
		e1 := budget.New(cfg, s1, nil, m1, nil)
		e2 := budget.New(cfg, s2, nil, m2, nil)
		s := budget.Subject{Tenant: "acme"}

		var wg sync.WaitGroup
		for i := range 10 { // 10 × $0.10: crosses 50 %, 80 % and 100 %
			wg.Add(1)
			go func() {
				defer wg.Done()
				e := e1
				if i%2 == 1 {
					e = e2
				}
				r, err := e.Reserve(ctx, s, money.FromUSD(0.1))
				if err == nil {
					r.Settle(ctx, money.FromUSD(0.1))
				}
			}()
		}
		wg.Wait()
		// A refused call after the 100 % alert raises nothing new.
		_, err := e1.Reserve(ctx, s, money.FromUSD(0.1))
		require.ErrorIs(t, err, budget.ErrExceeded)
		e1.Wait()
		e2.Wait()

		mu.Lock()
		defer mu.Unlock()
		var fractions []float64
		for _, a := range got {
			fractions = append(fractions, a.Fraction)
			require.Equal(t, "budget_alert", a.Type)
			require.Equal(t, "tenant", a.Scope)
			require.Equal(t, "acme", a.ID)
			require.Equal(t, "day", a.Period)
			require.Equal(t, money.FromUSD(1), a.LimitUSD)
			require.Equal(t, 24*time.Hour, a.PeriodEnd.Sub(a.PeriodStart))
		}
		sort.Float64s(fractions)
		require.Equal(t, []float64{0.5, 0.8, 1}, fractions, "one webhook per fraction")
		total := 0.0
		for _, f := range []string{"0.5", "0.8", "1"} {
			n := value(t, m1.BudgetAlerts.WithLabelValues("tenant", f)) +
				value(t, m2.BudgetAlerts.WithLabelValues("tenant", f))
			require.Equal(t, 1.0, n, "fraction %s counted once across instances", f)
			total += n
		}
		require.Equal(t, 3.0, total)
		require.Equal(t, 1.0, value(t, m1.BudgetRejected.WithLabelValues("tenant")))
		require.InDelta(t, 0, value(t, m1.BudgetRemaining.WithLabelValues("tenant")), 1e-9)
	})
}

// A run's max_cost_usd is a budget of its own that never resets; it is
// the one reported when several budgets refuse.
func TestRunBudget(t *testing.T) {
	ctx := t.Context()
	s1, _ := twoInstances(t, "sqlite")
	e := budget.New(config.Budgets{Tenant: config.BudgetLimit{DailyUSD: 0.25}}, s1, nil, nil, nil)
	s := budget.Subject{Tenant: "acme", Run: "run_1", RunMaxUSD: 0.2}
	r, err := e.Reserve(ctx, s, money.FromUSD(0.15))
	require.NoError(t, err)
	r.Settle(ctx, money.FromUSD(0.15))
	_, err = e.Reserve(ctx, s, money.FromUSD(0.15))
	ex, ok := budget.AsExceeded(err)
	require.True(t, ok)
	require.Equal(t, budget.ScopeRun, ex.Scope)
	require.Equal(t, budget.PeriodRun, ex.Period)
	require.Zero(t, ex.RetryAfter)
	require.Contains(t, ex.Error(), "max_cost_usd")
	// Another run of the tenant has its own cap (the tenant's still binds).
	_, err = e.Reserve(ctx, budget.Subject{Tenant: "acme", Run: "run_2", RunMaxUSD: 0.2}, money.FromUSD(0.15))
	ex, ok = budget.AsExceeded(err)
	require.True(t, ok)
	require.Equal(t, budget.ScopeTenant, ex.Scope)
}

func TestNilAndNoBudget(t *testing.T) {
	ctx := context.Background()
	var e *budget.Enforcer
	r, err := e.Reserve(ctx, budget.Subject{Tenant: "acme"}, money.FromUSD(1e9))
	require.NoError(t, err)
	require.NotNil(t, r)
	r.Settle(ctx, money.FromUSD(1e9))
	(*budget.Reservation)(nil).Settle(ctx, money.FromUSD(1))
	require.Zero(t, e.WorstCase("claude-sonnet-4-5", 3000, 1000))

	// No budget configured: the store is never asked.
	e = budget.New(config.Budgets{}, nil, nil, nil, nil)
	r, err = e.Reserve(ctx, budget.Subject{Tenant: "acme", Key: "k", Agent: "a", Run: "r"}, money.FromUSD(1e9))
	require.NoError(t, err)
	r.Settle(ctx, money.FromUSD(1e9))
}

// value reads a counter or gauge.
func value(t *testing.T, m prometheus.Metric) float64 {
	t.Helper()
	var d dto.Metric
	require.NoError(t, m.Write(&d))
	if d.Counter != nil {
		return d.Counter.GetValue()
	}
	return d.Gauge.GetValue()
}

// A slow webhook never delays the model call that raised the alert.
func TestSlowWebhookDoesNotBlockSettle(t *testing.T) {
	ctx := t.Context()
	s1, _ := twoInstances(t, "sqlite")
	release := make(chan struct{})
	var calls atomic.Int32
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(hook.Close)
	e := budget.New(config.Budgets{Tenant: config.BudgetLimit{DailyUSD: 1}, AlertFractions: []float64{0.5},
		AlertWebhook: config.Secret(hook.URL), AlertWebhookTimeout: 10 * time.Second}, s1, nil, nil, nil)
	r, err := e.Reserve(ctx, budget.Subject{Tenant: "acme"}, money.FromUSD(0.6))
	require.NoError(t, err)
	start := time.Now()
	r.Settle(ctx, money.FromUSD(0.6)) // crosses 50 %
	require.Less(t, time.Since(start), 2*time.Second, "Settle waited for the webhook")
	require.Eventually(t, func() bool { return calls.Load() == 1 }, 5*time.Second, 10*time.Millisecond)
	close(release)
	e.Wait()
}

// TestThousandSmallCallsSumExactly: a daily budget of $0.303 holds exactly
// 1000 calls of $0.000303 (101 input tokens at $3/MTok). As float dollars
// the 1000 settled amounts summed to 0.30299999999999805 (a spend shown
// with float noise, a limit compared within an epsilon); as nano-dollars
// they sum to the limit exactly, and one nano-dollar more is refused.
func TestThousandSmallCallsSumExactly(t *testing.T) {
	ctx := t.Context()
	s1, _ := twoInstances(t, "sqlite")
	e := budget.New(config.Budgets{Tenant: config.BudgetLimit{DailyUSD: 0.303}}, s1, nil, nil, nil)
	s := budget.Subject{Tenant: "acme"}
	call := money.FromUSD(0.000303)
	require.Equal(t, money.Nanos(303_000), call)
	for i := range 1000 {
		r, err := e.Reserve(ctx, s, call)
		require.NoError(t, err, "call %d", i)
		r.Settle(ctx, call)
	}
	_, err := e.Reserve(ctx, s, 1)
	ex, ok := budget.AsExceeded(err)
	require.True(t, ok, "one nano-dollar over the limit: %v", err)
	require.Equal(t, money.FromUSD(0.303), ex.LimitUSD)
	require.Equal(t, 1000*call, ex.SpentUSD, "the spend is the exact sum")
	require.Equal(t, "0.303", ex.SpentUSD.String())
	b, err := json.Marshal(budget.Alert{LimitUSD: ex.LimitUSD, SpentUSD: ex.SpentUSD})
	require.NoError(t, err)
	require.Contains(t, string(b), `"limit_usd":0.303,"spent_usd":0.303`)
}
