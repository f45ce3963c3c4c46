package httptool_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/agentd/agentd/internal/tool"
	"github.com/agentd/agentd/internal/tool/httptool"
)

var secrets = tool.NewSecrets(map[string]string{"key": "k3y-VALUE/+", "tok": "bearer-SECRET-123"})

func newTool(t *testing.T, cfg httptool.Config, g tool.GuardOptions) tool.Tool {
	t.Helper()
	if cfg.Name == "" {
		cfg.Name = "weather"
	}
	cfg.Secrets = secrets
	ht, err := httptool.New(cfg)
	require.NoError(t, err)
	g.Secrets = secrets
	g.Source = "http"
	return tool.Guard(ht, g)
}

func call(t *testing.T, tl tool.Tool, input string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	ctx = tool.WithCallInfo(ctx, tool.CallInfo{RunID: "run_1", Step: 3, ToolUseID: "toolu_1"})
	return tl.Call(ctx, json.RawMessage(input))
}

func TestGetWithTemplateAndSecrets(t *testing.T) {
	var got *http.Request
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = r
		w.Header().Set("Content-Type", "application/json")
		// A misbehaving API that echoes the key back.
		_, _ = io.WriteString(w, `{"temp":21,"city":"`+r.URL.Query().Get("city")+`","echo":"`+r.URL.Query().Get("key")+`","auth":"`+r.Header.Get("Authorization")+`"}`)
	}))
	defer ts.Close()
	tl := newTool(t, httptool.Config{
		URL:          ts.URL + "/v1/{{region}}/weather?city={{city}}&key={{secret:key}}",
		InputSchema:  json.RawMessage(`{"type":"object","properties":{"city":{"type":"string"},"region":{"type":"string"}},"required":["city","region"]}`),
		Headers:      map[string]string{"Authorization": "Bearer {{secret:tok}}"},
		AllowPrivate: true,
	}, tool.GuardOptions{OutputSchema: mustSchema(t, `{"type":"object","required":["temp"]}`)})
	assert.Equal(t, "weather", tl.Spec().Name)

	out, err := call(t, tl, `{"city":"São Paulo & more","region":"eu/west"}`)
	require.NoError(t, err)
	assert.Equal(t, "/v1/eu%2Fwest/weather", got.URL.EscapedPath())
	assert.Equal(t, "São Paulo & more", got.URL.Query().Get("city"))
	assert.Equal(t, "k3y-VALUE/+", got.URL.Query().Get("key"))
	assert.Equal(t, "Bearer bearer-SECRET-123", got.Header.Get("Authorization"))
	assert.Empty(t, got.Header.Get("Idempotency-Key"))
	assert.Contains(t, out, `"temp":21`)
	assert.NotContains(t, out, "k3y-VALUE")
	assert.NotContains(t, out, "bearer-SECRET-123")
	assert.Contains(t, out, `"echo":"[secret:key]"`)
	assert.Contains(t, out, `source="http"`)

	_, err = call(t, tl, `{"city":"x"}`)
	require.Error(t, err)
	assert.Equal(t, tool.KindInvalidInput, tool.Outcome(err))
	assert.Contains(t, err.Error(), `missing required property "region"`)
}

func TestPostConsequentialSendsIdempotencyKey(t *testing.T) {
	var body []byte
	var key, ctype string
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ = io.ReadAll(r.Body)
		key, ctype = r.Header.Get("Idempotency-Key"), r.Header.Get("Content-Type")
		_, _ = io.WriteString(w, "created")
	}))
	defer ts.Close()
	tl := newTool(t, httptool.Config{Method: "post", URL: ts.URL + "/tickets", AllowPrivate: true, Consequential: true}, tool.GuardOptions{})
	out, err := call(t, tl, `{"title":"hi"}`)
	require.NoError(t, err)
	assert.Contains(t, out, "created")
	assert.JSONEq(t, `{"title":"hi"}`, string(body))
	assert.Equal(t, "application/json", ctype)
	assert.Equal(t, "run_1:3:toolu_1", key)
}

func TestBadUpstreams(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("/500", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "database on fire; key="+r.URL.Query().Get("key"), http.StatusInternalServerError)
	})
	mux.HandleFunc("/hang", func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done()
	})
	mux.HandleFunc("/huge", func(w http.ResponseWriter, r *http.Request) {
		chunk := []byte(strings.Repeat("a", 1<<20))
		for range 50 { // 50 MB
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	})
	mux.HandleFunc("/latin1", func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte("caf\xe9"))
	})
	ts := httptest.NewServer(mux)
	defer ts.Close()

	t.Run("500", func(t *testing.T) {
		tl := newTool(t, httptool.Config{URL: ts.URL + "/500?key={{secret:key}}", AllowPrivate: true}, tool.GuardOptions{})
		_, err := call(t, tl, `{}`)
		require.Error(t, err)
		assert.Equal(t, tool.KindHTTPStatus, tool.Outcome(err))
		assert.Contains(t, err.Error(), "HTTP 500 Internal Server Error: database on fire")
		assert.NotContains(t, err.Error(), "k3y-VALUE")
		assert.Contains(t, err.Error(), "<untrusted_tool_output")
	})
	t.Run("Hang", func(t *testing.T) {
		tl := newTool(t, httptool.Config{URL: ts.URL + "/hang", AllowPrivate: true}, tool.GuardOptions{Timeout: 300 * time.Millisecond})
		start := time.Now()
		_, err := call(t, tl, `{}`)
		require.Error(t, err)
		assert.Equal(t, tool.KindTimeout, tool.Outcome(err))
		assert.Contains(t, err.Error(), "timed out after 300ms")
		assert.Less(t, time.Since(start), 3*time.Second)
	})
	t.Run("50MB", func(t *testing.T) {
		tl := newTool(t, httptool.Config{URL: ts.URL + "/huge", AllowPrivate: true, MaxResponseBytes: 70000}, tool.GuardOptions{MaxOutputBytes: 65536})
		out, err := call(t, tl, `{}`)
		require.NoError(t, err)
		assert.Less(t, len(out), 66000)
		assert.Contains(t, out, "[output truncated: it exceeded 65536 bytes]")
	})
	t.Run("InvalidUTF8", func(t *testing.T) {
		tl := newTool(t, httptool.Config{URL: ts.URL + "/latin1", AllowPrivate: true}, tool.GuardOptions{})
		out, err := call(t, tl, `{}`)
		require.NoError(t, err)
		assert.Contains(t, out, "caf\uFFFD")
	})
	t.Run("OutputSchemaMismatch", func(t *testing.T) {
		tl := newTool(t, httptool.Config{URL: ts.URL + "/latin1", AllowPrivate: true}, tool.GuardOptions{OutputSchema: mustSchema(t, `{"type":"object"}`)})
		_, err := call(t, tl, `{}`)
		require.Error(t, err)
		assert.Equal(t, tool.KindInvalidOutput, tool.Outcome(err))
	})
	t.Run("ConnectionRefused", func(t *testing.T) {
		dead := httptest.NewServer(http.NotFoundHandler())
		u := dead.URL
		dead.Close()
		tl := newTool(t, httptool.Config{URL: u + "/x", AllowPrivate: true}, tool.GuardOptions{})
		_, err := call(t, tl, `{}`)
		require.Error(t, err)
		assert.Equal(t, tool.KindUnavailable, tool.Outcome(err))
	})
}

func TestSSRFGuard(t *testing.T) {
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "internal data")
	}))
	defer ts.Close()

	t.Run("LoopbackRefused", func(t *testing.T) {
		tl := newTool(t, httptool.Config{URL: ts.URL + "/"}, tool.GuardOptions{})
		_, err := call(t, tl, `{}`)
		require.Error(t, err)
		assert.Equal(t, tool.KindBlocked, tool.Outcome(err))
		assert.Contains(t, err.Error(), "127.0.0.1 is a loopback, private, link-local or reserved address")
	})
	t.Run("NameResolvingToLoopbackRefused", func(t *testing.T) {
		u := strings.Replace(ts.URL, "127.0.0.1", "localhost", 1)
		tl := newTool(t, httptool.Config{URL: u + "/"}, tool.GuardOptions{})
		_, err := call(t, tl, `{}`)
		require.Error(t, err)
		assert.Equal(t, tool.KindBlocked, tool.Outcome(err))
	})
	t.Run("RedirectToLoopbackRefused", func(t *testing.T) {
		// The first hop is "public" (the test lets this one address
		// through); it redirects to 127.0.0.1, which the guard refuses
		// at dial time.
		internal := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			t.Error("the internal server must not be reached")
		}))
		defer internal.Close()
		public := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, strings.Replace(internal.URL, "127.0.0.1", "localhost", 1)+"/secret", http.StatusFound)
		}))
		defer public.Close()
		publicAddr := strings.TrimPrefix(public.URL, "http://")
		cfg := httptool.WithCheckAddr(httptool.Config{Name: "r", URL: public.URL + "/", Secrets: secrets}, func(network, address string) error {
			if address == publicAddr {
				return nil
			}
			return httptool.CheckAddr(network, address)
		})
		ht, err := httptool.New(cfg)
		require.NoError(t, err)
		_, err = call(t, tool.Guard(ht, tool.GuardOptions{}), `{}`)
		require.Error(t, err)
		assert.Equal(t, tool.KindBlocked, tool.Outcome(err), err.Error())
		assert.Contains(t, err.Error(), "loopback")
	})
	t.Run("RedirectToLiteralIPRefused", func(t *testing.T) {
		public := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, "http://169.254.169.254/latest/meta-data/", http.StatusFound)
		}))
		defer public.Close()
		publicAddr := strings.TrimPrefix(public.URL, "http://")
		cfg := httptool.WithCheckAddr(httptool.Config{Name: "r", URL: public.URL + "/"}, func(network, address string) error {
			if address == publicAddr {
				return nil
			}
			return httptool.CheckAddr(network, address)
		})
		ht, err := httptool.New(cfg)
		require.NoError(t, err)
		_, err = call(t, tool.Guard(ht, tool.GuardOptions{}), `{}`)
		require.Error(t, err)
		assert.Equal(t, tool.KindBlocked, tool.Outcome(err), err.Error())
		assert.Contains(t, err.Error(), "169.254.169.254")
	})
	t.Run("CheckIP", func(t *testing.T) {
		for _, s := range []string{"127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254", "0.0.0.0", "100.64.0.1", "::1", "fe80::1", "fd00::1", "::ffff:127.0.0.1", "::ffff:10.0.0.1", "2002:a9fe:a9fe::1", "2001:0:4136:e378::1"} {
			assert.ErrorIs(t, httptool.CheckIP(netip.MustParseAddr(s)), httptool.ErrBlocked, s)
		}
		for _, s := range []string{"8.8.8.8", "1.1.1.1", "2606:4700:4700::1111"} {
			assert.NoError(t, httptool.CheckIP(netip.MustParseAddr(s)), s)
		}
	})
}

func TestConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		cfg  httptool.Config
		want string
	}{
		{httptool.Config{Name: "x", URL: "ftp://example.com/"}, "url: must be an absolute http(s) URL"},
		{httptool.Config{Name: "x", URL: "https://{{host}}.example.com/"}, "url: placeholders may appear only in the path and query"},
		{httptool.Config{Name: "x", URL: "https://example.com/?k={{secret:nope}}"}, `url: unknown secret "nope"`},
		{httptool.Config{Name: "x", URL: "https://example.com/", Method: "TRACE"}, "method: must be one of"},
		{httptool.Config{Name: "x", URL: "https://example.com/", InputSchema: json.RawMessage(`{"type":"thing"}`)}, `input_schema: invalid JSON schema: $: unknown type "thing"`},
		{httptool.Config{Name: "x", URL: "https://example.com/", Headers: map[string]string{"X": "{{city}}"}}, "headers.X: only {{secret:NAME}} placeholders"},
	} {
		tc.cfg.Secrets = secrets
		_, err := httptool.New(tc.cfg)
		require.Error(t, err, tc.want)
		assert.Contains(t, err.Error(), tc.want)
	}
}

func mustSchema(t *testing.T, s string) *tool.Schema {
	t.Helper()
	sch, err := tool.ParseSchema([]byte(s))
	require.NoError(t, err)
	return sch
}
