package anthropic

import (
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// transportDoer's errors are http.Client's, and its answers the
// transport's (a redirect is not followed).
func TestTransportDoer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	refused := "http://" + ln.Addr().String() + "/v1/messages"
	require.NoError(t, ln.Close())

	tr := http.DefaultTransport.(*http.Transport).Clone()
	defer tr.CloseIdleConnections()
	send := func(d httpDoer, url string) (*http.Response, error) {
		req, err := http.NewRequest(http.MethodPost, url, strings.NewReader("{}"))
		require.NoError(t, err)
		return d.Do(req)
	}
	_, want := send(&http.Client{Transport: tr}, refused)
	require.Error(t, want)
	_, got := send(transportDoer{tr}, refused)
	require.Error(t, got)
	require.Equal(t, want.Error(), got.Error())

	// The password stays out of errors, as http.Client keeps it out.
	_, err = send(transportDoer{tr}, "http://user:secret@"+strings.TrimPrefix(refused, "http://"))
	require.Error(t, err)
	require.NotContains(t, err.Error(), "secret")

	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/elsewhere", http.StatusTemporaryRedirect)
	}))
	defer srv.Close()
	resp, err := send(transportDoer{tr}, srv.URL+"/v1/messages")
	require.NoError(t, err)
	require.NoError(t, resp.Body.Close())
	require.Equal(t, http.StatusTemporaryRedirect, resp.StatusCode)
}

// A base URL with a user and password keeps http.Client (which turns them
// into Basic credentials for a request without an Authorization header);
// any other gets transportDoer.
func TestBaseURLWithUserKeepsClient(t *testing.T) {
	require.IsType(t, &http.Client{}, New(Config{BaseURL: "https://gw:pw@gateway.example", APIKey: "k"}).http)
	require.IsType(t, transportDoer{}, New(Config{BaseURL: "https://gateway.example", APIKey: "k"}).http)
	require.IsType(t, transportDoer{}, New(Config{APIKey: "k"}).http)
}
