// Package httptool implements HTTP tools declared in config: a method, a URL
// template filled from the model's input, headers, and an SSRF guard on
// every connection.
package httptool

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/agentd/agentd/internal/llm"
	"github.com/agentd/agentd/internal/tool"
)

// Config is one HTTP tool.
type Config struct {
	// Name the model calls the tool by. Required.
	Name        string
	Description string
	// Method: GET, POST, PUT, PATCH or DELETE. Default GET. POST, PUT
	// and PATCH send the model's input as the JSON body.
	Method string
	// URL template: an absolute http(s) URL in which {{FIELD}} is replaced
	// by the input's top-level property FIELD (path- or query-escaped by
	// position) and {{secret:NAME}} by a secret. Placeholders may appear
	// only after the host.
	URL string
	// InputSchema is the JSON schema the model sees and its input is
	// checked against (type, required, properties). Default {"type":"object"}.
	InputSchema json.RawMessage
	// Headers are request headers; values may hold {{secret:NAME}}.
	Headers map[string]string
	// AllowPrivate lets the tool reach loopback, private and link-local
	// addresses.
	AllowPrivate bool
	// Consequential adds an Idempotency-Key header (run:step:tool_use).
	Consequential bool
	// MaxResponseBytes caps how much of a response body is read; more is
	// cut off (the output guard then truncates with a marker). Default
	// 1 MiB.
	MaxResponseBytes int64
	// Secrets resolve {{secret:NAME}}.
	Secrets *tool.Secrets

	// checkAddr replaces the dial-time SSRF check (tests).
	checkAddr func(network, address string) error
}

// DefaultMaxResponseBytes is Config.MaxResponseBytes' default.
const DefaultMaxResponseBytes = 1 << 20

var methods = []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete}

type httpTool struct {
	cfg    Config
	spec   llm.ToolSpec
	schema *tool.Schema
	client *http.Client
	fields []string // input fields of the URL template
}

// New checks cfg and returns the tool. Errors name the field (method, url,
// input_schema, headers.NAME).
func New(cfg Config) (tool.Tool, error) {
	if cfg.Method == "" {
		cfg.Method = http.MethodGet
	}
	cfg.Method = strings.ToUpper(cfg.Method)
	if !slices.Contains(methods, cfg.Method) {
		return nil, fmt.Errorf("method: must be one of %s (got %q)", strings.Join(methods, ", "), cfg.Method)
	}
	if cfg.MaxResponseBytes <= 0 {
		cfg.MaxResponseBytes = DefaultMaxResponseBytes
	}
	if len(cfg.InputSchema) == 0 {
		cfg.InputSchema = json.RawMessage(`{"type":"object"}`)
	}
	schema, err := tool.ParseSchema(cfg.InputSchema)
	if err != nil {
		return nil, fmt.Errorf("input_schema: %w", err)
	}
	fields, err := checkURLTemplate(cfg.URL, cfg.Secrets)
	if err != nil {
		return nil, fmt.Errorf("url: %w", err)
	}
	var headerNames []string
	for k, v := range cfg.Headers {
		if _, err := cfg.Secrets.Expand(v, nil); err != nil {
			return nil, fmt.Errorf("headers.%s: %w", k, err)
		}
		refs, _ := tool.TemplateRefs(v)
		for _, r := range refs {
			if !strings.HasPrefix(r, "secret:") {
				return nil, fmt.Errorf("headers.%s: only {{secret:NAME}} placeholders are allowed, not {{%s}}", k, r)
			}
		}
		headerNames = append(headerNames, k)
	}
	t := &httpTool{
		cfg:    cfg,
		spec:   llm.ToolSpec{Name: cfg.Name, Description: cfg.Description, InputSchema: cfg.InputSchema},
		schema: schema,
		client: newClient(Policy{AllowPrivate: cfg.AllowPrivate}, cfg.checkAddr, headerNames),
		fields: fields,
	}
	return t, nil
}

// checkURLTemplate checks that tmpl is an absolute http(s) URL whose
// placeholders come after the host and name known secrets; it returns the
// input fields it uses.
func checkURLTemplate(tmpl string, secrets *tool.Secrets) ([]string, error) {
	refs, err := tool.TemplateRefs(tmpl)
	if err != nil {
		return nil, err
	}
	probe, _ := tool.ExpandTemplate(tmpl, func(string) (string, bool, error) { return "x", true, nil })
	u, err := url.Parse(probe)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("must be an absolute http(s) URL (got %q)", tmpl)
	}
	if i := strings.Index(tmpl, "{{"); i >= 0 {
		rest := tmpl[strings.Index(tmpl, "://")+3:]
		slash := strings.IndexAny(rest, "/?")
		if slash < 0 || strings.Contains(rest[:slash], "{{") {
			return nil, errors.New("placeholders may appear only in the path and query, not in the scheme or host")
		}
	}
	var fields []string
	for _, r := range refs {
		if name, ok := strings.CutPrefix(r, "secret:"); ok {
			if !secrets.Has(name) {
				return nil, fmt.Errorf("unknown secret %q (define it under secrets)", name)
			}
			continue
		}
		if r == "" {
			return nil, errors.New("empty {{}} placeholder")
		}
		fields = append(fields, r)
	}
	return fields, nil
}

func (t *httpTool) Spec() llm.ToolSpec { return t.spec }

func (t *httpTool) Call(ctx context.Context, input json.RawMessage) (string, error) {
	if len(bytes.TrimSpace(input)) == 0 {
		input = json.RawMessage(`{}`)
	}
	if err := t.schema.Validate(input); err != nil {
		return "", tool.Errorf(tool.KindInvalidInput, "input does not match the tool's input schema: %v", err)
	}
	var args map[string]any
	dec := json.NewDecoder(bytes.NewReader(input))
	dec.UseNumber()
	if err := dec.Decode(&args); err != nil {
		return "", tool.Errorf(tool.KindInvalidInput, "input must be a JSON object: %v", err)
	}
	u, err := t.buildURL(args)
	if err != nil {
		return "", err
	}
	var body io.Reader
	hasBody := t.cfg.Method == http.MethodPost || t.cfg.Method == http.MethodPut || t.cfg.Method == http.MethodPatch
	if hasBody {
		body = bytes.NewReader(input)
	}
	req, err := http.NewRequestWithContext(ctx, t.cfg.Method, u, body)
	if err != nil {
		return "", tool.Errorf(tool.KindInvalidInput, "build request: %v", err)
	}
	if hasBody {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json, text/*;q=0.9, */*;q=0.1")
	req.Header.Set("User-Agent", "agentd-http-tool")
	for k, v := range t.cfg.Headers {
		hv, err := t.cfg.Secrets.Expand(v, nil)
		if err != nil {
			return "", err
		}
		req.Header.Set(k, hv)
	}
	if t.cfg.Consequential {
		if key := tool.CallInfoFrom(ctx).IdempotencyKey(); key != "" {
			req.Header.Set("Idempotency-Key", key)
		}
	}
	resp, err := t.client.Do(req)
	if err != nil {
		var te *tool.Error
		switch {
		case errors.As(err, &te):
			return "", &tool.Error{Kind: te.Kind, Err: fmt.Errorf("%s %s: %w", t.cfg.Method, redactURL(req.URL), te.Err)}
		case errors.Is(err, ErrBlocked):
			return "", &tool.Error{Kind: tool.KindBlocked, Err: fmt.Errorf("%s %s: %w", t.cfg.Method, redactURL(req.URL), unwrapBlocked(err))}
		case ctx.Err() != nil:
			return "", ctx.Err()
		}
		return "", tool.Errorf(tool.KindUnavailable, "%s %s: %v", t.cfg.Method, redactURL(req.URL), unwrapURLError(err))
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, t.cfg.MaxResponseBytes))
	if err != nil {
		if ctx.Err() != nil {
			return "", ctx.Err()
		}
		return "", tool.Errorf(tool.KindUnavailable, "read response: %v", err)
	}
	if resp.StatusCode >= 400 {
		// Scrub before cutting: a secret across the cut would survive
		// as an unmatched prefix.
		return "", &tool.Error{Kind: tool.KindHTTPStatus, Status: resp.StatusCode,
			Err: fmt.Errorf("HTTP %s: %s", resp.Status, tool.Truncate(t.cfg.Secrets.Scrub(string(data)), 1024))}
	}
	return string(data), nil
}

// buildURL fills the URL template: input fields path-escaped before the
// query, query-escaped in it; secrets likewise.
func (t *httpTool) buildURL(args map[string]any) (string, error) {
	var inQuery bool
	var b strings.Builder
	tmpl := t.cfg.URL
	for {
		i := strings.Index(tmpl, "{{")
		if i < 0 {
			b.WriteString(tmpl)
			break
		}
		if strings.Contains(tmpl[:i], "?") {
			inQuery = true
		}
		b.WriteString(tmpl[:i])
		end := strings.Index(tmpl[i:], "}}")
		ref := strings.TrimSpace(tmpl[i+2 : i+end])
		tmpl = tmpl[i+end+2:]
		escape := url.PathEscape
		if inQuery {
			escape = url.QueryEscape
		}
		if name, ok := strings.CutPrefix(ref, "secret:"); ok {
			v, err := t.cfg.Secrets.Expand("{{secret:"+name+"}}", escape)
			if err != nil {
				return "", err
			}
			b.WriteString(v)
			continue
		}
		v, ok := args[ref]
		if !ok || v == nil {
			return "", tool.Errorf(tool.KindInvalidInput, "input field %q is required (it is part of the URL)", ref)
		}
		var s string
		switch x := v.(type) {
		case string:
			s = x
		case json.Number:
			s = x.String()
		case bool:
			s = fmt.Sprint(x)
		default:
			return "", tool.Errorf(tool.KindInvalidInput, "input field %q must be a string, number or boolean", ref)
		}
		b.WriteString(escape(s))
	}
	return b.String(), nil
}

// redactURL drops the query (it may hold secrets or personal data) from u
// for error messages.
func redactURL(u *url.URL) string {
	c := *u
	c.RawQuery, c.User, c.Fragment = "", nil, ""
	if u.RawQuery != "" {
		return c.String() + "?…"
	}
	return c.String()
}

func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

func unwrapBlocked(err error) error {
	for e := err; e != nil; e = errors.Unwrap(e) {
		if strings.HasPrefix(e.Error(), ErrBlocked.Error()) {
			return e
		}
	}
	return err
}
