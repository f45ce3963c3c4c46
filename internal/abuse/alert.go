package abuse

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"
)

// The alert of a flagged subject: the metric, a Warn log line and the
// optional webhook.

// alert raises the alert of a newly flagged subject: metric, log line,
// webhook (in the background).
func (d *Detector) alert(ctx context.Context, t Throttle) {
	if d.cfg.Shared != nil {
		d.publishAsync(ctx, t)
	}
	d.cfg.Metrics.flagged(t.Signal)
	d.cfg.Log.WarnContext(ctx, "abuse: rate jumped past its baseline; throttling",
		"subject", t.Subject, "tenant", t.Tenant, "key_id", t.KeyID, "signal", t.Signal,
		"rate", t.Rate, "baseline", t.Baseline, "threshold", t.Threshold, "multiple", d.cfg.Multiple,
		"window", d.cfg.Window.String(), "throttled_until", t.Until.UTC().Format(time.RFC3339))
	if d.cfg.WebhookURL == "" {
		return
	}
	select {
	case d.webhook <- struct{}{}:
	default:
		d.cfg.Log.WarnContext(ctx, "abuse: too many alert webhooks in flight; this one is not sent", "subject", t.Subject)
		return
	}
	d.sending.Add(1)
	go func() {
		defer func() { <-d.webhook; d.sending.Done() }()
		if err := d.post(context.WithoutCancel(ctx), t); err != nil {
			d.cfg.Log.WarnContext(ctx, "abuse: alert webhook failed", "subject", t.Subject, "err", err)
		}
	}()
}

// post sends one alert to the webhook.
func (d *Detector) post(ctx context.Context, t Throttle) error {
	body, err := json.Marshal(Alert{Event: "abuse.flagged", Throttle: t})
	if err != nil {
		return fmt.Errorf("encode alert: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, d.cfg.WebhookTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.cfg.WebhookURL, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("build request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "agentd-abuse-alert")
	resp, err := d.cfg.Client.Do(req)
	if err != nil {
		// The URL may carry a token: report the error without it.
		return fmt.Errorf("post: %w", stripURL(err))
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		return fmt.Errorf("post: status %d", resp.StatusCode)
	}
	return nil
}

// stripURL drops the URL from an *url.Error (it may carry a token).
func stripURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}
