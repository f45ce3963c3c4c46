// Package abuse flags API keys whose request rate or spend jumps far above
// their own recent baseline, throttles them hard and raises an alert.
//
// Each subject (an API key; with no key, as with authentication off or for
// queued runs, which do not keep theirs, its tenant) has two signals:
// requests and spend in USD. For each, the detector keeps the count of the
// current fixed window (Config.Window, per subject, starting at its first
// observation) and of the previous one, and a baseline: an exponentially
// weighted average of the completed windows with a smoothing factor of
// Window/Baseline, bias-corrected so that a young subject's baseline is the
// average of the windows it has had (counting empty ones), not pulled
// towards zero.
//
// The current rate is the sliding-window estimate: the current window's
// count plus the previous window's, weighted by how much of it still lies
// within one window of now. A signal is flagged when that rate exceeds
// Multiple × max(baseline, floor), where the floor (Config.MinRequests,
// Config.MinSpendUSD, per minute, scaled to the window) keeps a quiet or
// new key's first burst of normal use from being flagged.
//
// A flagged subject is throttled for ThrottleFor: Allow refuses it (and,
// for a tenant-level subject, every key of the tenant), and nothing it does
// is counted meanwhile, so the burst never becomes part of its baseline.
// The alert is the counter agentd_abuse_flagged_total{signal}, a Warn log
// line naming the key id and tenant, and a best-effort JSON POST to
// Config.WebhookURL sent in the background.
//
// Counters and baselines are in this instance's memory: with several
// instances behind a load balancer each one sees its share of a key's
// traffic (baseline and current rate alike, so the ratio holds). Throttles
// are too, and with Config.Shared (Redis) they are also shared: a throttle
// or lift on one instance reaches the others at their next Sync (see
// shared.go); while Redis is down each instance throttles on its own.
package abuse

import (
	"context"
	"log/slog"
	"math"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/agentd/agentd/internal/store"
)

// Signals (label values of agentd_abuse_flagged_total).
const (
	SignalRequests = "requests"
	SignalSpend    = "spend"
)

// Defaults of Config.
const (
	DefaultWindow         = time.Minute
	DefaultBaseline       = time.Hour
	DefaultMultiple       = 10.0
	DefaultMinRequests    = 10.0 // per minute
	DefaultMinSpendUSD    = 0.10 // per minute
	DefaultThrottleFor    = 15 * time.Minute
	DefaultWebhookTimeout = 5 * time.Second
)

// TenantPrefix starts the id of a tenant-level subject ("tenant:acme");
// a key's id is its key id ("key_…").
const TenantPrefix = "tenant:"

// maxWebhooks bounds the alerts being sent at once; more are dropped.
const maxWebhooks = 8

// Config configures a Detector. Zero values mean the default.
type Config struct {
	// Window is the short window whose rate is compared with the
	// baseline. Defaults to 1m.
	Window time.Duration
	// Baseline is the period the baseline averages over (the smoothing
	// factor is Window/Baseline). Defaults to 1h.
	Baseline time.Duration
	// Multiple is how many times the baseline the rate must exceed.
	// Defaults to 10.
	Multiple float64
	// MinRequests and MinSpendUSD are the least baseline assumed, per
	// minute. Default to 10 requests and 0.10 USD.
	MinRequests, MinSpendUSD float64
	// ThrottleFor is how long a flagged subject is refused. Defaults to
	// 15m.
	ThrottleFor time.Duration

	// WebhookURL receives each alert as a JSON POST; empty: none.
	WebhookURL string
	// WebhookTimeout bounds one POST. Defaults to 5s.
	WebhookTimeout time.Duration
	// Client sends the webhook. Defaults to a client with WebhookTimeout.
	Client *http.Client

	// Shared, when set (abuseredis.Store: Redis), shares throttles and
	// lifts between instances (see Sync); counters and baselines stay per
	// instance.
	Shared Shared
	// SharedTimeout bounds one call to Shared. Defaults to 100ms.
	SharedTimeout time.Duration
	// SyncEvery is how often Run reads the other instances' throttles.
	// Defaults to 2s.
	SyncEvery time.Duration

	Metrics *Metrics
	Log     *slog.Logger
	// Now is the clock (tests). Defaults to time.Now.
	Now func() time.Time
}

// Throttle describes a throttled subject: why and until when.
type Throttle struct {
	// Subject is the key id, or "tenant:<name>" for a tenant-level subject.
	Subject string `json:"subject"`
	Tenant  string `json:"tenant"`
	// KeyID is empty for a tenant-level subject.
	KeyID string `json:"key_id,omitempty"`
	// Signal is what jumped: "requests" or "spend".
	Signal string `json:"signal"`
	// Rate is the signal's value over the last window when it was
	// flagged; Baseline its baseline per window then; Threshold the
	// value it exceeded (Multiple × max(Baseline, floor)).
	Rate      float64 `json:"rate"`
	Baseline  float64 `json:"baseline"`
	Threshold float64 `json:"threshold"`
	// WindowSeconds is the length of the window of Rate.
	WindowSeconds float64   `json:"window_seconds"`
	FlaggedAt     time.Time `json:"flagged_at"`
	Until         time.Time `json:"throttled_until"`
}

// Alert is the body of a webhook POST.
type Alert struct {
	// Event is "abuse.flagged".
	Event string `json:"event"`
	Throttle
}

// Decision is the outcome of Allow.
type Decision struct {
	Allowed bool
	// When refused: the throttle and the time until it ends.
	Throttle   Throttle
	RetryAfter time.Duration
}

// Detector watches request and spend rates. It is safe for concurrent
// use; a nil *Detector allows everything and records nothing.
type Detector struct {
	cfg     Config
	alpha   float64    // smoothing factor: Window/Baseline
	floors  [2]float64 // per window: requests, spend
	webhook chan struct{}
	sending sync.WaitGroup

	mu        sync.Mutex
	subjects  map[subject]*state
	lastSweep time.Time
	redisDown bool // the last Redis call failed (for logging changes)
}

// subject is a key of a tenant, or the tenant itself (key "").
type subject struct{ tenant, key string }

func (s subject) id() string {
	if s.key != "" {
		return s.key
	}
	return TenantPrefix + s.tenant
}

// meter is one signal of one subject.
type meter struct {
	cur, prev float64 // counts of the current and the previous window
	// base is the weighted average of completed windows, weight the sum
	// of the weights used (for the bias correction): base/weight is the
	// baseline.
	base, weight float64
}

func (m *meter) baseline() float64 {
	if m.weight <= 0 {
		return 0
	}
	return m.base / m.weight
}

// fold adds one completed window of value v, then k empty ones.
func (m *meter) fold(v float64, k int64, alpha float64) {
	m.base = (1-alpha)*m.base + alpha*v
	m.weight = (1-alpha)*m.weight + alpha
	if k > 0 {
		d := math.Pow(1-alpha, float64(k))
		m.base *= d
		m.weight = d*m.weight + (1 - d)
	}
}

const (
	iRequests = 0
	iSpend    = 1
)

var signals = [2]string{SignalRequests, SignalSpend}

type state struct {
	start    time.Time // of the current window
	seen     time.Time // last observation
	m        [2]meter
	throttle Throttle // Until is zero when never throttled or lifted
	// liftedAt is when the last throttle was lifted: a shared throttle
	// flagged before it is not taken up again (see Sync).
	liftedAt time.Time
}

// New returns a Detector for cfg.
func New(cfg Config) *Detector {
	if cfg.Window <= 0 {
		cfg.Window = DefaultWindow
	}
	if cfg.Baseline <= 0 {
		cfg.Baseline = DefaultBaseline
	}
	if cfg.Baseline < cfg.Window {
		cfg.Baseline = cfg.Window
	}
	if cfg.Multiple <= 0 {
		cfg.Multiple = DefaultMultiple
	}
	if cfg.MinRequests <= 0 {
		cfg.MinRequests = DefaultMinRequests
	}
	if cfg.MinSpendUSD <= 0 {
		cfg.MinSpendUSD = DefaultMinSpendUSD
	}
	if cfg.ThrottleFor <= 0 {
		cfg.ThrottleFor = DefaultThrottleFor
	}
	if cfg.WebhookTimeout <= 0 {
		cfg.WebhookTimeout = DefaultWebhookTimeout
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{Timeout: cfg.WebhookTimeout}
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.SharedTimeout <= 0 {
		cfg.SharedTimeout = DefaultSharedTimeout
	}
	if cfg.SyncEvery <= 0 {
		cfg.SyncEvery = DefaultSyncEvery
	}
	perWindow := float64(cfg.Window) / float64(time.Minute)
	d := &Detector{
		cfg:      cfg,
		alpha:    float64(cfg.Window) / float64(cfg.Baseline),
		floors:   [2]float64{cfg.MinRequests * perWindow, cfg.MinSpendUSD * perWindow},
		webhook:  make(chan struct{}, maxWebhooks),
		subjects: map[subject]*state{},
	}
	if cfg.Metrics != nil {
		cfg.Metrics.det.Store(d)
	}
	return d
}

// Allow counts one API request of tenant's key (key "" with
// authentication off) and reports whether it may pass: not when the key or
// its tenant is throttled, or when this request makes the key's request
// rate jump past the multiple of its baseline (the request is then the
// first one refused).
func (d *Detector) Allow(ctx context.Context, tenant, key string) Decision {
	if d == nil {
		return Decision{Allowed: true}
	}
	now := d.cfg.Now()
	d.mu.Lock()
	if t, ok := d.throttledLocked(tenant, key, now); ok {
		d.mu.Unlock()
		return Decision{Throttle: t, RetryAfter: t.Until.Sub(now)}
	}
	t, flagged := d.observeLocked(subject{tenant, key}, iRequests, 1, now)
	d.mu.Unlock()
	if !flagged {
		return Decision{Allowed: true}
	}
	d.alert(ctx, t)
	return Decision{Throttle: t, RetryAfter: t.Until.Sub(now)}
}

// ObserveSpend counts usd spent on a model call of tenant's key ("" for
// none); a jump flags and throttles the key (or the tenant, without a key).
func (d *Detector) ObserveSpend(ctx context.Context, tenant, key string, usd float64) {
	if d == nil || usd <= 0 || math.IsNaN(usd) || math.IsInf(usd, 0) {
		return
	}
	now := d.cfg.Now()
	d.mu.Lock()
	if _, ok := d.throttledLocked(tenant, key, now); ok {
		d.mu.Unlock()
		return
	}
	t, flagged := d.observeLocked(subject{tenant, key}, iSpend, usd, now)
	d.mu.Unlock()
	if flagged {
		d.alert(ctx, t)
	}
}

// throttledLocked reports the throttle of tenant's key or of the tenant
// itself that holds at now.
func (d *Detector) throttledLocked(tenant, key string, now time.Time) (Throttle, bool) {
	if s := d.subjects[subject{tenant, key}]; s != nil && now.Before(s.throttle.Until) {
		return s.throttle, true
	}
	if key != "" {
		if s := d.subjects[subject{tenant, ""}]; s != nil && now.Before(s.throttle.Until) {
			return s.throttle, true
		}
	}
	return Throttle{}, false
}

// observeLocked adds v to signal i of sub and flags sub when its rate
// jumped; the caller checked that sub is not throttled.
func (d *Detector) observeLocked(sub subject, i int, v float64, now time.Time) (Throttle, bool) {
	if now.Sub(d.lastSweep) >= time.Minute {
		d.sweepLocked(now)
	}
	s := d.subjects[sub]
	if s == nil {
		s = &state{start: now}
		d.subjects[sub] = s
	}
	d.roll(s, now)
	s.seen = now
	m := &s.m[i]
	m.cur += v
	rate := d.rate(s, m, now)
	base := m.baseline()
	threshold := d.cfg.Multiple * max(base, d.floors[i])
	if rate <= threshold {
		return Throttle{}, false
	}
	d.throttleLocked(s, Throttle{
		Subject: sub.id(), Tenant: sub.tenant, KeyID: sub.key, Signal: signals[i],
		Rate: rate, Baseline: base, Threshold: threshold, WindowSeconds: d.cfg.Window.Seconds(),
		FlaggedAt: now, Until: now.Add(d.cfg.ThrottleFor),
	})
	return s.throttle, true
}

// throttleLocked throttles s. The burst is not part of the baseline: the
// windows it filled are dropped, and so are those of the throttle (see
// roll).
func (d *Detector) throttleLocked(s *state, t Throttle) {
	s.throttle = t
	for j := range s.m {
		s.m[j].cur, s.m[j].prev = 0, 0
	}
}

// liftLocked ends the throttle of s, lifted at liftedAt: it starts a fresh
// window with the baseline it had before it was flagged.
func (d *Detector) liftLocked(s *state, now, liftedAt time.Time) {
	s.throttle.Until = time.Time{}
	s.liftedAt = liftedAt
	s.start = now
	for j := range s.m {
		s.m[j].cur, s.m[j].prev = 0, 0
	}
}

// rate is m's sliding-window rate at now: the current window and the part
// of the previous one that lies within one window of now.
func (d *Detector) rate(s *state, m *meter, now time.Time) float64 {
	into := float64(now.Sub(s.start)) / float64(d.cfg.Window)
	return m.cur + m.prev*max(0, 1-into)
}

// roll closes the windows of s that ended by now, folding them into the
// baselines; windows that began while s was throttled are not folded.
func (d *Detector) roll(s *state, now time.Time) {
	w := d.cfg.Window
	if now.Before(s.start.Add(w)) {
		return
	}
	n := int64(now.Sub(s.start) / w)
	frozen := s.throttle.Until.After(s.start)
	for i := range s.m {
		m := &s.m[i]
		if !frozen {
			m.fold(m.cur, n-1, d.alpha)
		}
		m.prev = 0
		if n == 1 {
			m.prev = m.cur
		}
		m.cur = 0
	}
	s.start = s.start.Add(time.Duration(n) * w)
}

// idleFor is how long an unthrottled subject may be idle before it is
// forgotten: by then its baseline is about 5 % of what it was.
func (d *Detector) idleFor() time.Duration { return 3 * d.cfg.Baseline }

func (d *Detector) sweepLocked(now time.Time) {
	d.lastSweep = now
	for k, s := range d.subjects {
		if now.Sub(s.seen) > d.idleFor() && !now.Before(s.throttle.Until) {
			delete(d.subjects, k)
		}
	}
}

// Throttled lists the subjects throttled now, by subject id.
func (d *Detector) Throttled() []Throttle {
	if d == nil {
		return nil
	}
	now := d.cfg.Now()
	d.mu.Lock()
	defer d.mu.Unlock()
	out := []Throttle{}
	for _, s := range d.subjects {
		if now.Before(s.throttle.Until) {
			out = append(out, s.throttle)
		}
	}
	slices.SortFunc(out, func(a, b Throttle) int { return strings.Compare(a.Subject, b.Subject) })
	return out
}

func (d *Detector) throttledCount() int {
	now := d.cfg.Now()
	d.mu.Lock()
	defer d.mu.Unlock()
	n := 0
	for _, s := range d.subjects {
		if now.Before(s.throttle.Until) {
			n++
		}
	}
	return n
}

// Lift ends the throttle of the subject id (a key id, or "tenant:<name>")
// at once; false when this instance does not throttle it. The subject
// starts a fresh window with the baseline it had before it was flagged.
// With Redis the lift reaches the other instances at their next Sync.
func (d *Detector) Lift(ctx context.Context, id string) bool {
	if d == nil || id == "" {
		return false
	}
	now := d.cfg.Now()
	d.mu.Lock()
	var lifted *Throttle
	for _, s := range d.subjects {
		if s.throttle.Subject == id && now.Before(s.throttle.Until) {
			t := s.throttle
			lifted = &t
			d.liftLocked(s, now, now)
		}
	}
	d.mu.Unlock()
	if lifted == nil {
		return false
	}
	d.cfg.Log.InfoContext(ctx, "abuse: throttle lifted by an operator",
		"subject", lifted.Subject, "tenant", lifted.Tenant, "key_id", lifted.KeyID, "signal", lifted.Signal)
	if d.cfg.Shared != nil {
		if err := d.publish(ctx, shared{Throttle: *lifted, LiftedAt: now}); err != nil {
			d.cfg.Log.WarnContext(ctx, "abuse: the lift did not reach Redis; lift it on the other instances too",
				"subject", lifted.Subject, "err", err)
		}
	}
	return true
}

// Close waits for the alert webhooks being sent and the throttles being
// published (each bounded by its timeout).
func (d *Detector) Close() {
	if d != nil {
		d.sending.Wait()
	}
}

// UsageAppender stores usage rows (store.Usage does).
type UsageAppender interface {
	AppendUsage(ctx context.Context, r store.UsageRecord) error
}

// Recorder observes the spend of every usage row, then stores it with
// Next: it is the run loop's usage recorder when abuse detection is on.
type Recorder struct {
	Next     UsageAppender
	Detector *Detector
}

// AppendUsage implements run.UsageRecorder.
func (r *Recorder) AppendUsage(ctx context.Context, rec store.UsageRecord) error {
	r.Detector.ObserveSpend(ctx, rec.Tenant, rec.Key, rec.CostUSD.USD())
	return r.Next.AppendUsage(ctx, rec)
}

// Metrics are the detector's Prometheus metrics; nil records nothing.
type Metrics struct {
	Flagged       *prometheus.CounterVec
	ThrottledKeys prometheus.GaugeFunc
	det           atomic.Pointer[Detector]
}

// NewMetrics registers the metrics with reg. agentd_abuse_throttled_keys
// reads the Detector built with these metrics (0 before there is one).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Flagged: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "agentd_abuse_flagged_total",
			Help: "API keys (or tenants) flagged and throttled because their rate jumped past the configured multiple of their baseline, by signal (requests, spend).",
		}, []string{"signal"}),
	}
	m.ThrottledKeys = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "agentd_abuse_throttled_keys",
		Help: "API keys (or tenants) this instance is throttling now for abuse.",
	}, func() float64 {
		if d := m.det.Load(); d != nil {
			return float64(d.throttledCount())
		}
		return 0
	})
	for _, s := range signals {
		m.Flagged.WithLabelValues(s)
	}
	reg.MustRegister(m.Flagged, m.ThrottledKeys)
	return m
}

func (m *Metrics) flagged(signal string) {
	if m != nil {
		m.Flagged.WithLabelValues(signal).Inc()
	}
}
