package cli

import (
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestSSEReader(t *testing.T) {
	t.Parallel()
	in := ": ping\n\nid: 1\nevent: start\ndata: {\"a\":1}\n\n" +
		"id: 2\r\nevent: text_delta\r\ndata: line one\r\ndata: line two\r\n\r\n" +
		": ping\n" +
		"id: 3\nevent: done\ndata: {}\n\n"
	rd := newSSEReader(strings.NewReader(in))
	ev, err := rd.Next()
	require.NoError(t, err)
	require.Equal(t, event{ID: 1, Name: "start", Data: []byte(`{"a":1}`)}, ev)
	ev, err = rd.Next()
	require.NoError(t, err)
	require.Equal(t, event{ID: 2, Name: "text_delta", Data: []byte("line one\nline two")}, ev, "CRLF and multi-line data")
	ev, err = rd.Next()
	require.NoError(t, err)
	require.True(t, ev.terminal())
	_, err = rd.Next()
	require.ErrorIs(t, err, io.EOF)

	// Cut inside an event: the partial event is dropped, and the cut is
	// told from a clean end.
	for _, cut := range []string{"id: 4\nevent: text_delta\ndata: {\"te", "id: 4\n", "id: 4\nevent: x\ndata: {}\n"} {
		rd = newSSEReader(strings.NewReader(cut))
		_, err = rd.Next()
		require.ErrorIs(t, err, io.ErrUnexpectedEOF, cut)
	}
	_, err = newSSEReader(strings.NewReader("id: x\n\n")).Next()
	require.ErrorContains(t, err, `event id "x" is not a number`)
	_, err = newSSEReader(iotestErr{}).Next()
	require.EqualError(t, err, "boom")
}

type iotestErr struct{}

func (iotestErr) Read([]byte) (int, error) { return 0, errors.New("boom") }

func TestRendererUnknownEventsAndErrors(t *testing.T) {
	t.Parallel()
	var b strings.Builder
	r := &renderer{w: &b}
	r.render(event{Name: "text_delta", Data: []byte(`{"text":"Hel"}`)})
	r.render(event{Name: "text_delta", Data: []byte(`{"text":"lo"}`)})
	r.render(event{Name: "requires_action", Data: []byte(`{"tool": "refund",  "amount": 5}`)})
	r.render(event{Name: "tool_result", Data: []byte(`{"name":"t","content":"bad\ninput","is_error":true,"duration_ms":3}`)})
	require.Equal(t, "Hello\n  [requires_action] {\"tool\":\"refund\",\"amount\":5}\n  t ✗ (3 ms) error: bad input\n", b.String())
	require.EqualError(t, eventError(event{Name: "error", Data: []byte(`{"type":"timeout","message":"run exceeded 2m"}`)}),
		"run failed: timeout: run exceeded 2m")
}
