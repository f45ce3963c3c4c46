package observe

import "github.com/prometheus/client_golang/prometheus"

// Values of agentd_feedback_total's rating label.
const (
	FeedbackPositive = "positive"
	FeedbackNegative = "negative"
)

func newFeedbackCounter() *prometheus.CounterVec {
	return prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "agentd_feedback_total",
		Help: "People's ratings of runs (POST /v1/runs/{id}/feedback), by agent and rating (positive, negative). " +
			"A replacement counts again only when it changes the rating.",
	}, []string{"agent", "rating"})
}

// ObserveFeedback records a rating of a run of agent: rating > 0 counts as
// positive, else negative. The caller decides what counts: a first
// feedback, and a replacement that changed the rating (see
// internal/server's feedback handler).
func (m *Metrics) ObserveFeedback(agent string, rating int) {
	if m == nil {
		return
	}
	label := FeedbackNegative
	if rating > 0 {
		label = FeedbackPositive
	}
	m.Feedback.WithLabelValues(agent, label).Inc()
}
