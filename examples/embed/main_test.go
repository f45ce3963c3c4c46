package main

import (
	"bytes"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// The example program answers one question with its Go tool (the
// simulator calls the tool the message names, with order_id "example").
func TestAsk(t *testing.T) {
	t.Setenv("ANTHROPIC_API_KEY", "") // the simulator, also where a key is set
	var out, errOut bytes.Buffer
	store := "sqlite://" + filepath.ToSlash(filepath.Join(t.TempDir(), "embed.db"))
	err := run(t.Context(), []string{"-store", store, "-ask", "Where is my order? Use order_status."}, &out, &errOut)
	require.NoError(t, err, errOut.String())
	require.Contains(t, out.String(), `Tool results: [order_status] => "packed, ships tomorrow"`)
	require.Regexp(t, `\(2 model calls, \$0\.\d+, conversation conv_\S+\)`, out.String())
}
