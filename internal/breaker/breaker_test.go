package breaker_test

import (
	"errors"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/agentd/agentd/internal/breaker"
	"github.com/agentd/agentd/internal/config"
)

func TestSetOverridesAndStates(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	s := breaker.NewSet(breaker.Options{
		Defaults:   breaker.Config{ConsecutiveFailures: 3, OpenTimeout: time.Minute},
		Overrides:  map[string]breaker.Config{"store": {ConsecutiveFailures: 1}, "redis": {Disabled: true}},
		Registerer: reg,
	})
	st := s.Get("store")
	require.Same(t, st, s.Get("store"))
	require.EqualValues(t, 1, st.Config().ConsecutiveFailures)
	require.Equal(t, time.Minute, st.Config().OpenTimeout, "the override keeps the defaults it does not set")
	require.EqualValues(t, breaker.DefaultHalfOpenProbes, st.Config().HalfOpenProbes)

	done, err := st.Allow()
	require.NoError(t, err)
	done(breaker.Failure)
	require.Equal(t, breaker.StateOpen, st.State())
	_, err = st.Allow()
	oe, ok := breaker.AsOpen(err)
	require.True(t, ok)
	require.ErrorIs(t, err, breaker.ErrOpen)
	require.Equal(t, "store", oe.Dependency)
	require.Equal(t, time.Minute, oe.RetryAfter)

	// Ignored outcomes and 3 failures of a tool: only failures count.
	tl := s.Get(breaker.PrefixTool + "x")
	for range 5 {
		done, err := tl.Allow()
		require.NoError(t, err)
		done(breaker.Ignore)
	}
	require.Equal(t, breaker.StateClosed, tl.State())

	// Disabled: always allowed.
	rd := s.Get(breaker.Redis)
	for range 10 {
		done, err := rd.Allow()
		require.NoError(t, err)
		done(breaker.Failure)
	}
	require.Equal(t, breaker.StateDisabled, rd.State())

	require.InDelta(t, 2, gauge(t, reg, "store"), 0)
	require.InDelta(t, 0, gauge(t, reg, "tool:x"), 0)
	deps := []string{}
	for _, st := range s.Statuses() {
		deps = append(deps, st.Dependency+"="+st.State)
	}
	require.Equal(t, []string{"redis=disabled", "store=open", "tool:x=closed"}, deps)
}

func TestNilSetAndBreakerAllowEverything(t *testing.T) {
	t.Parallel()
	var s *breaker.Set
	b := s.Get("store")
	done, err := b.Allow()
	require.NoError(t, err)
	done(breaker.Failure)
	require.False(t, b.Open())
	require.Nil(t, s.Statuses())
	require.False(t, errors.Is(nil, breaker.ErrOpen))
}

// gauge returns agentd_breaker_state{dependency=dep}.
func gauge(t *testing.T, reg *prometheus.Registry, dep string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() != "agentd_breaker_state" {
			continue
		}
		for _, m := range mf.GetMetric() {
			if m.GetLabel()[0].GetValue() == dep {
				return m.GetGauge().GetValue()
			}
		}
	}
	t.Fatalf("no agentd_breaker_state{dependency=%q}", dep)
	return 0
}

// The store's breaker probes again after StoreOpenTimeout unless its
// override says otherwise; other dependencies keep the defaults'.
func TestStoreOpenTimeoutDefault(t *testing.T) {
	o := breaker.OptionsFromConfig(config.Breakers{})
	require.Equal(t, breaker.StoreOpenTimeout, o.Overrides[breaker.Store].OpenTimeout)
	require.Zero(t, o.Overrides["redis"].OpenTimeout)
	o = breaker.OptionsFromConfig(config.Breakers{Overrides: map[string]config.Breaker{breaker.Store: {OpenTimeout: time.Minute, ConsecutiveFailures: 2}}})
	require.Equal(t, time.Minute, o.Overrides[breaker.Store].OpenTimeout)
	require.EqualValues(t, 2, o.Overrides[breaker.Store].ConsecutiveFailures)
}
