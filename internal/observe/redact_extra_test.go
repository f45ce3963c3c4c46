package observe

import (
	"bytes"
	"log/slog"
	"testing"

	"github.com/stretchr/testify/assert"
)

// Rotated secrets (SetExtra) are scrubbed from log lines too, next to the
// configured ones; a later SetExtra replaces the extra set.
func TestRedactorSetExtra(t *testing.T) {
	r := NewRedactor("configured-secret")
	var buf bytes.Buffer
	log := slog.New(NewRedactHandler(slog.NewTextHandler(&buf, nil), r))

	r.SetExtra([]string{"rotated-old-1", "rotated-new-2", "short"})
	log.Info("call", "a", "rotated-old-1", "b", "x rotated-new-2 x", "c", "configured-secret", "d", "short")
	out := buf.String()
	assert.NotContains(t, out, "rotated-old-1")
	assert.NotContains(t, out, "rotated-new-2")
	assert.NotContains(t, out, "configured-secret")
	assert.Contains(t, out, "d=short", "shorter than MinSecretLen: left alone")

	r.SetExtra([]string{"rotated-new-2"})
	assert.Equal(t, "rotated-old-1 "+RedactMask+" "+RedactMask, r.Scrub("rotated-old-1 rotated-new-2 configured-secret"))
}
