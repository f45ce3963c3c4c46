// Package budget enforces spend budgets: per tenant, API key and agent, per
// UTC day and per UTC month, and per run (max_cost_usd).
//
// Before a model call the caller reserves the call's worst-case cost
// (Reserve); the reservation must fit every budget that applies, or the call
// is refused with an *ExceededError. After the call it settles the
// reservation with the actual cost (Reservation.Settle), which releases the
// difference. Counters and reservations live in the system-of-record store
// (store.Budgets), so budgets hold across instances; a reservation whose
// process died expires after the reservation TTL and stops counting.
//
// When a budget's settled spend crosses one of the alert fractions for the
// first time in its period, the Enforcer counts
// agentd_budget_alerts_total{scope,fraction}, logs once and POSTs a JSON
// webhook (best effort, in the background); the store dedupes the alert
// across instances.
package budget

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/agentd/agentd/internal/config"
	"github.com/agentd/agentd/internal/cost"
	"github.com/agentd/agentd/internal/money"
	"github.com/agentd/agentd/internal/observe"
	"github.com/agentd/agentd/internal/store"
)

// Scopes of a budget.
const (
	ScopeTenant = "tenant"
	ScopeKey    = "key"
	ScopeAgent  = "agent"
	ScopeRun    = "run"
)

// Periods of an ExceededError.
const (
	PeriodDay   = "day"
	PeriodMonth = "month"
	PeriodRun   = "run"
)

// RunCounterTTL is how long a run's spend counter is kept after its last
// reservation.
const RunCounterTTL = 30 * 24 * time.Hour

// DefaultSweepInterval is how often Run deletes expired counters and
// reservations.
const DefaultSweepInterval = time.Minute

// epsilon absorbs float rounding in comparisons with a limit.
const epsilon = 1e-9

// ErrExceeded is matched (errors.Is) by every *ExceededError.
var ErrExceeded = errors.New("budget exceeded")

// Subject is who a model call is made for.
type Subject struct {
	Tenant string
	// Key is the API key id, "" when auth is off (or unknown: queued
	// runs); then no key budget applies.
	Key   string
	Agent string
	// Run is the run's id; RunMaxUSD > 0 caps the run's total cost.
	Run       string
	RunMaxUSD float64
}

// ExceededError refuses a model call: its reservation does not fit the
// budget of Scope (tenant, key, agent or run) ID in Period (day, month or
// run).
type ExceededError struct {
	Scope, ID, Period string
	LimitUSD          money.Nanos
	// SpentUSD is the budget's settled spend plus the reservations held
	// against it when the call was refused.
	SpentUSD money.Nanos
	// RetryAfter is the time until the period resets; 0 for a run, whose
	// budget never resets.
	RetryAfter time.Duration
}

func (e *ExceededError) Error() string {
	if e.Scope == ScopeRun {
		return fmt.Sprintf("budget exceeded: the run's max_cost_usd of $%.4f would be exceeded ($%.4f spent or reserved)",
			e.LimitUSD.USD(), e.SpentUSD.USD())
	}
	return fmt.Sprintf("budget exceeded: %s %q %s budget of $%.4f ($%.4f spent or reserved; resets in %s)",
		e.Scope, e.ID, periodAdjective(e.Period), e.LimitUSD.USD(), e.SpentUSD.USD(), e.RetryAfter.Round(time.Second))
}

// Is makes errors.Is(err, ErrExceeded) true.
func (e *ExceededError) Is(target error) bool { return target == ErrExceeded }

func periodAdjective(p string) string {
	switch p {
	case PeriodDay:
		return "daily"
	case PeriodMonth:
		return "monthly"
	}
	return p
}

// AsExceeded returns the *ExceededError in err's chain.
func AsExceeded(err error) (*ExceededError, bool) {
	var e *ExceededError
	ok := errors.As(err, &e)
	return e, ok
}

// Enforcer reserves and settles model call costs against budgets. A nil
// *Enforcer enforces nothing. Its methods are safe for concurrent use.
type Enforcer struct {
	cfg     config.Budgets
	store   store.Budgets
	pricing *cost.Table
	metrics *observe.Metrics
	log     *slog.Logger

	// NowFunc returns the current time (tests); nil: time.Now.
	NowFunc func() time.Time
	// Client delivers webhooks; nil: a client with the configured
	// alert_webhook_timeout.
	Client *http.Client

	alerts sync.WaitGroup // alert deliveries in flight

	mu        sync.Mutex
	remaining map[string]map[store.BudgetCounterKey]money.Nanos // scope → counter → remaining USD
}

// New returns an Enforcer of cfg's budgets on st. pricing (may be nil)
// serves WorstCase; metrics and log may be nil.
func New(cfg config.Budgets, st store.Budgets, pricing *cost.Table, metrics *observe.Metrics, log *slog.Logger) *Enforcer {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.ReservationTTL <= 0 {
		cfg.ReservationTTL = config.DefaultBudgetReservationTTL
	}
	if cfg.AlertWebhookTimeout <= 0 {
		cfg.AlertWebhookTimeout = config.DefaultBudgetAlertWebhookTimeout
	}
	cfg.AlertFractions = slices.Sorted(slices.Values(cfg.AlertFractions))
	if metrics != nil {
		// Every series from the start (the label sets are small and
		// fixed): Prometheus' increase() cannot see a counter's first
		// increment when the series is born at 1.
		for _, scope := range []string{ScopeTenant, ScopeKey, ScopeAgent} {
			for _, f := range cfg.AlertFractions {
				metrics.BudgetAlerts.WithLabelValues(scope, strconv.FormatFloat(f, 'f', -1, 64))
			}
		}
		for _, scope := range []string{ScopeTenant, ScopeKey, ScopeAgent, ScopeRun} {
			metrics.BudgetRejected.WithLabelValues(scope)
		}
	}
	return &Enforcer{cfg: cfg, store: st, pricing: pricing, metrics: metrics, log: log,
		remaining: map[string]map[store.BudgetCounterKey]money.Nanos{}}
}

// WorstCase is the reservation for a call of model with a prompt of
// promptBytes (its JSON encoding, estimated at cost.EstimateTokens) and
// maxTokens: see cost.Table.WorstCase.
func (e *Enforcer) WorstCase(model string, promptBytes int, maxTokens int64) money.Nanos {
	if e == nil {
		return 0
	}
	return e.pricing.WorstCase(model, cost.EstimateTokens(promptBytes), maxTokens)
}

func (e *Enforcer) now() time.Time {
	if e.NowFunc != nil {
		return e.NowFunc().UTC()
	}
	return time.Now().UTC()
}

// Reservation is a reserved amount, to be settled once. A nil or no-op
// Reservation settles as a no-op.
type Reservation struct {
	e      *Enforcer
	id     string
	limits []store.BudgetLimit
	once   sync.Once
}

// Reserve reserves usd (the call's worst case) against every budget of s.
// It returns an *ExceededError (errors.Is ErrExceeded) when the call does not
// fit one of them, or a store error (the call must not be made then either:
// budgets fail closed). A nil Enforcer, or a subject without any budget,
// gets a no-op Reservation.
func (e *Enforcer) Reserve(ctx context.Context, s Subject, usd money.Nanos) (*Reservation, error) {
	if e == nil {
		return &Reservation{}, nil
	}
	now := e.now()
	limits := e.limits(s, now)
	if len(limits) == 0 {
		return &Reservation{}, nil
	}
	usd = max(usd, 0)
	id := newID()
	counters, ok, err := e.store.ReserveBudget(ctx, store.ReserveBudgetParams{
		ReservationID: id, Limits: limits, AmountUSD: usd, Now: now, ExpiresAt: now.Add(e.cfg.ReservationTTL),
	})
	if err != nil {
		return nil, fmt.Errorf("reserve budget: %w", err)
	}
	if !ok {
		ex := e.exceeded(counters, usd, now)
		e.metrics.BudgetRejectedCall(ex.Scope)
		e.updateRemaining(counters, 0, now)
		// A refused call means the budget is spent: the 100% alert.
		for _, c := range counters {
			if c.SpentUSD+c.ReservedUSD+usd > c.LimitUSD && c.Scope != ScopeRun {
				e.maybeAlert(c, 1, true, now)
			}
		}
		e.log.InfoContext(ctx, "model call refused by budget", "scope", ex.Scope, "id", ex.ID, "period", ex.Period,
			"limit_usd", ex.LimitUSD, "spent_usd", ex.SpentUSD, "reservation_usd", usd)
		return nil, ex
	}
	e.updateRemaining(counters, usd, now)
	return &Reservation{e: e, id: id, limits: limits}, nil
}

// Settle records the call's actual cost and releases the rest of the
// reservation. It is safe on a nil Reservation and runs at most once; the
// write is not cut short by ctx's cancellation (the call was made). A store
// error is logged: the reservation then expires on its own.
func (r *Reservation) Settle(ctx context.Context, actualUSD money.Nanos) {
	if r == nil || r.e == nil {
		return
	}
	r.once.Do(func() { r.e.settle(ctx, r, actualUSD) })
}

func (e *Enforcer) settle(ctx context.Context, r *Reservation, actualUSD money.Nanos) {
	actualUSD = max(actualUSD, 0)
	now := e.now()
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	counters, err := e.store.SettleBudget(sctx, store.SettleBudgetParams{
		ReservationID: r.id, Limits: r.limits, ActualUSD: actualUSD, Now: now,
	})
	if err != nil {
		e.log.ErrorContext(ctx, "settle budget reservation: it holds its budget until it expires",
			"reservation", r.id, "actual_usd", actualUSD, "expires_in", e.cfg.ReservationTTL, "err", err)
		return
	}
	e.updateRemaining(counters, 0, now)
	for _, c := range counters {
		if c.Scope == ScopeRun || c.LimitUSD <= 0 {
			continue
		}
		share := float64(c.SpentUSD) / float64(c.LimitUSD)
		f := 0.0
		for _, af := range e.cfg.AlertFractions {
			if share+epsilon >= af {
				f = af
			}
		}
		if f > c.AlertedFraction {
			e.maybeAlert(c, f, false, now)
		}
	}
}

// limits are the budget counters that apply to s at now.
func (e *Enforcer) limits(s Subject, now time.Time) []store.BudgetLimit {
	var out []store.BudgetLimit
	add := func(scope, subject string, l config.BudgetLimit) {
		if l.DailyUSD > 0 {
			out = append(out, store.BudgetLimit{
				BudgetCounterKey: store.BudgetCounterKey{Scope: scope, Subject: subject, Period: dayPeriod(now)},
				LimitUSD:         money.FromUSD(l.DailyUSD), ExpiresAt: nextDay(now).Add(24 * time.Hour),
			})
		}
		if l.MonthlyUSD > 0 {
			out = append(out, store.BudgetLimit{
				BudgetCounterKey: store.BudgetCounterKey{Scope: scope, Subject: subject, Period: monthPeriod(now)},
				LimitUSD:         money.FromUSD(l.MonthlyUSD), ExpiresAt: nextMonth(now).Add(24 * time.Hour),
			})
		}
	}
	pick := func(m map[string]config.BudgetLimit, name string, def config.BudgetLimit) config.BudgetLimit {
		if l, ok := m[name]; ok {
			return l
		}
		return def
	}
	if s.Tenant != "" {
		add(ScopeTenant, s.Tenant, pick(e.cfg.Tenants, s.Tenant, e.cfg.Tenant))
	}
	if s.Key != "" {
		add(ScopeKey, s.Key, pick(e.cfg.Keys, s.Key, e.cfg.Key))
	}
	if s.Agent != "" {
		add(ScopeAgent, s.Agent, pick(e.cfg.Agents, s.Agent, e.cfg.Agent))
	}
	if s.Run != "" && s.RunMaxUSD > 0 {
		out = append(out, store.BudgetLimit{
			BudgetCounterKey: store.BudgetCounterKey{Scope: ScopeRun, Subject: s.Run, Period: PeriodRun},
			LimitUSD:         money.FromUSD(s.RunMaxUSD), ExpiresAt: now.Add(RunCounterTTL),
		})
	}
	return out
}

// exceeded picks the budget that refuses a reservation of usd: the run's if
// it is one of them (it never resets), else the one that resets last (the
// call fits again only once every budget has room).
func (e *Enforcer) exceeded(counters []store.BudgetCounter, usd money.Nanos, now time.Time) *ExceededError {
	var best *ExceededError
	for _, c := range counters {
		if c.SpentUSD+c.ReservedUSD+usd <= c.LimitUSD {
			continue
		}
		ex := &ExceededError{Scope: c.Scope, ID: c.Subject, LimitUSD: c.LimitUSD, SpentUSD: c.SpentUSD + c.ReservedUSD}
		ex.Period, ex.RetryAfter = periodReset(c.Period, now)
		switch {
		case best == nil:
			best = ex
		case best.Scope == ScopeRun:
		case ex.Scope == ScopeRun || ex.RetryAfter > best.RetryAfter:
			best = ex
		}
	}
	if best == nil { // the store said no without an exceeded counter: be safe
		best = &ExceededError{Scope: ScopeTenant, Period: PeriodDay, RetryAfter: time.Minute}
	}
	return best
}

// Periods as stored: "d:2006-01-02", "m:2006-01", "run".

func dayPeriod(t time.Time) string   { return "d:" + t.Format("2006-01-02") }
func monthPeriod(t time.Time) string { return "m:" + t.Format("2006-01") }

func nextDay(t time.Time) time.Time {
	y, m, d := t.Date()
	return time.Date(y, m, d+1, 0, 0, 0, 0, time.UTC)
}

func nextMonth(t time.Time) time.Time {
	y, m, _ := t.Date()
	return time.Date(y, m+1, 1, 0, 0, 0, 0, time.UTC)
}

// periodReset names a stored period and returns the time from now until it
// ends (at least a second; 0 for a run).
func periodReset(p string, now time.Time) (string, time.Duration) {
	name, _, end := periodBounds(p)
	if name == PeriodRun {
		return name, 0
	}
	return name, max(end.Sub(now), time.Second)
}

// periodBounds names a stored day or month period and returns its first
// instant and the instant it ends.
func periodBounds(p string) (name string, start, end time.Time) {
	if t, err := time.Parse("2006-01-02", strings.TrimPrefix(p, "d:")); err == nil && strings.HasPrefix(p, "d:") {
		return PeriodDay, t, nextDay(t)
	}
	if t, err := time.Parse("2006-01", strings.TrimPrefix(p, "m:")); err == nil && strings.HasPrefix(p, "m:") {
		return PeriodMonth, t, nextMonth(t)
	}
	return PeriodRun, time.Time{}, time.Time{}
}

// current reports whether a stored period is the one of now.
func current(p string, now time.Time) bool {
	return p == dayPeriod(now) || p == monthPeriod(now)
}

// updateRemaining feeds agentd_budget_remaining_usd{scope}: the lowest
// remaining USD (limit − spent − reserved − extra) among the counters of a
// scope this instance saw in their current period. Run budgets are left
// out (one per run would only churn).
func (e *Enforcer) updateRemaining(counters []store.BudgetCounter, extra money.Nanos, now time.Time) {
	if e.metrics == nil {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	touched := map[string]bool{}
	for _, c := range counters {
		if c.Scope == ScopeRun {
			continue
		}
		m := e.remaining[c.Scope]
		if m == nil {
			m = map[store.BudgetCounterKey]money.Nanos{}
			e.remaining[c.Scope] = m
		}
		m[c.BudgetCounterKey] = c.LimitUSD - c.SpentUSD - c.ReservedUSD - extra
		touched[c.Scope] = true
	}
	for scope := range touched {
		low, seen := money.Nanos(0), false
		for k, v := range e.remaining[scope] {
			if !current(k.Period, now) {
				delete(e.remaining[scope], k) // a past period
				continue
			}
			if !seen || v < low {
				low, seen = v, true
			}
		}
		if seen {
			e.metrics.SetBudgetRemaining(scope, max(low, 0).USD())
		}
	}
}

// Alert is the JSON body of a budget alert webhook.
type Alert struct {
	Type string `json:"type"` // "budget_alert"
	// Scope is tenant, key or agent; ID the tenant, key id or agent name.
	Scope  string `json:"scope"`
	ID     string `json:"id"`
	Period string `json:"period"` // day or month
	// PeriodStart is the period's first instant (UTC); it resets at
	// PeriodEnd.
	PeriodStart time.Time `json:"period_start"`
	PeriodEnd   time.Time `json:"period_end"`
	// Fraction is the alert fraction crossed (0.8: 80 %).
	Fraction float64 `json:"fraction"`
	// LimitUSD and SpentUSD are dollars, exact (JSON numbers with at most
	// nine decimals).
	LimitUSD money.Nanos `json:"limit_usd"`
	SpentUSD money.Nanos `json:"spent_usd"`
	// Exhausted: a model call was refused (the budget has no room for
	// another call).
	Exhausted bool      `json:"exhausted"`
	Time      time.Time `json:"time"`
}

// maybeAlert raises, in the background, the alerts of c up to fraction f
// that no instance raised yet in c's period.
// exhausted: a call was refused.
func (e *Enforcer) maybeAlert(c store.BudgetCounter, f float64, exhausted bool, now time.Time) {
	if len(e.cfg.AlertFractions) == 0 {
		return
	}
	// The highest configured fraction <= f.
	top := 0.0
	for _, af := range e.cfg.AlertFractions {
		if af <= f+epsilon {
			top = af
		}
	}
	if top == 0 || top <= c.AlertedFraction {
		return
	}
	e.alerts.Add(1)
	go func() {
		defer e.alerts.Done()
		ctx, cancel := context.WithTimeout(context.Background(), e.cfg.AlertWebhookTimeout+5*time.Second)
		defer cancel()
		prev, err := e.store.MarkBudgetAlert(ctx, c.BudgetCounterKey, top)
		if err != nil {
			e.log.WarnContext(ctx, "mark budget alert", "scope", c.Scope, "id", c.Subject, "err", err)
			return
		}
		for _, af := range e.cfg.AlertFractions {
			if af > prev && af <= top {
				e.raise(ctx, c, af, exhausted, now)
			}
		}
	}()
}

func (e *Enforcer) raise(ctx context.Context, c store.BudgetCounter, f float64, exhausted bool, now time.Time) {
	period, start, end := periodBounds(c.Period)
	label := strconv.FormatFloat(f, 'f', -1, 64)
	e.metrics.BudgetAlert(c.Scope, label)
	e.log.WarnContext(ctx, "budget alert", "scope", c.Scope, "id", c.Subject, "period", period,
		"fraction", f, "limit_usd", c.LimitUSD, "spent_usd", c.SpentUSD, "exhausted", exhausted)
	u := e.cfg.AlertWebhook.Value()
	if u == "" {
		return
	}
	body, err := json.Marshal(Alert{Type: "budget_alert", Scope: c.Scope, ID: c.Subject, Period: period,
		PeriodStart: start, PeriodEnd: end, Fraction: f, LimitUSD: c.LimitUSD, SpentUSD: c.SpentUSD,
		Exhausted: exhausted, Time: now})
	if err != nil {
		return
	}
	client := e.Client
	if client == nil {
		client = &http.Client{Timeout: e.cfg.AlertWebhookTimeout}
	}
	wctx, cancel := context.WithTimeout(ctx, e.cfg.AlertWebhookTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(wctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		// The error quotes the URL, which may carry a token.
		e.log.WarnContext(ctx, "budget alert webhook: invalid request", "scope", c.Scope, "id", c.Subject)
		return
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "agentd-budget-alert")
	resp, err := client.Do(req)
	if err != nil {
		// The URL may carry a token: never log it (nor the error, which
		// quotes it).
		e.log.WarnContext(ctx, "budget alert webhook failed", "scope", c.Scope, "id", c.Subject, "fraction", f)
		return
	}
	_ = resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		e.log.WarnContext(ctx, "budget alert webhook answered an error", "status", resp.StatusCode,
			"scope", c.Scope, "id", c.Subject, "fraction", f)
	}
}

// Wait blocks until the alerts raised so far are delivered (tests, and
// shutdown).
func (e *Enforcer) Wait() {
	if e != nil {
		e.alerts.Wait()
	}
}

// Run deletes expired counters and reservations every interval (<= 0:
// DefaultSweepInterval) until ctx ends; it returns nil then. Expired
// reservations stop counting at once; this only reclaims their rows.
func (e *Enforcer) Run(ctx context.Context, interval time.Duration) error {
	if e == nil {
		<-ctx.Done()
		return nil
	}
	if interval <= 0 {
		interval = DefaultSweepInterval
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			e.Wait()
			return nil
		case <-t.C:
		}
		n, err := e.store.DeleteExpiredBudgets(ctx, e.now())
		if err != nil && ctx.Err() == nil {
			e.log.WarnContext(ctx, "sweep expired budgets", "err", err)
		} else if n > 0 {
			e.log.DebugContext(ctx, "swept expired budgets", "deleted", n)
		}
	}
}

func newID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return "bres_" + hex.EncodeToString(b[:])
}
