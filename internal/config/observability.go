package config

import (
	"net/url"
	"reflect"
	"strings"
)

// Defaults of the observability section.
const (
	DefaultServiceName = "agentd"
	DefaultSampleRatio = 1.0
)

// Observability is tracing (docs/observability.md).
type Observability struct {
	// OTLPEndpoint is the OTLP/HTTP endpoint spans are exported to, e.g.
	// "http://otel-collector:4318" (the exporter appends /v1/traces) or a
	// full URL ending in /v1/traces. Empty: tracing is off. Defaults to
	// empty.
	OTLPEndpoint string `yaml:"otlp_endpoint"`
	// ServiceName is the service.name resource attribute. Defaults to
	// "agentd".
	ServiceName string `yaml:"service_name"`
	// SampleRatio is the share of new traces sampled, in (0, 1]; requests
	// that arrive with a sampled W3C traceparent are always sampled (the
	// caller decided). Defaults to 1.0.
	SampleRatio float64 `yaml:"sample_ratio"`
}

// Service returns ServiceName or its default.
func (o Observability) Service() string {
	if o.ServiceName == "" {
		return DefaultServiceName
	}
	return o.ServiceName
}

// Ratio returns SampleRatio or its default (zero means default).
func (o Observability) Ratio() float64 {
	if o.SampleRatio == 0 {
		return DefaultSampleRatio
	}
	return o.SampleRatio
}

// validateObservability checks the observability section.
func (c *Config) validateObservability(v *validator) {
	o := c.Observability
	if o.OTLPEndpoint != "" {
		if !isHTTPURL(o.OTLPEndpoint) {
			v.add("observability.otlp_endpoint", "must be an http:// or https:// URL, e.g. http://otel-collector:4318")
		}
	}
	if o.SampleRatio < 0 || o.SampleRatio > 1 {
		v.add("observability.sample_ratio", "must be in (0, 1] (0: the default, 1.0)")
	}
}

// AllSecretValues returns the values of every non-empty Secret in the
// configuration (API keys, key sources, admin token, webhook secret, Redis
// URL, tool secrets, and any Secret field added later), plus the password
// of every URL among them and of store.url. The log redaction handler
// scrubs them; nothing else should need the list.
func (c *Config) AllSecretValues() []string {
	seen := map[string]bool{}
	var out []string
	add := func(s string) {
		if s != "" && !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	addURLPassword := func(s string) {
		if !strings.Contains(s, "://") {
			return
		}
		if u, err := url.Parse(s); err == nil && u.User != nil {
			if pw, ok := u.User.Password(); ok {
				add(pw)
			}
		}
	}
	secretType := reflect.TypeFor[Secret]()
	var walk func(v reflect.Value)
	walk = func(v reflect.Value) {
		if v.Type() == secretType {
			s := v.String()
			add(s)
			addURLPassword(s)
			return
		}
		switch v.Kind() {
		case reflect.Pointer, reflect.Interface:
			if !v.IsNil() {
				walk(v.Elem())
			}
		case reflect.Struct:
			for i := range v.NumField() {
				if v.Type().Field(i).IsExported() {
					walk(v.Field(i))
				}
			}
		case reflect.Slice, reflect.Array:
			for i := range v.Len() {
				walk(v.Index(i))
			}
		case reflect.Map:
			iter := v.MapRange()
			for iter.Next() {
				walk(iter.Value())
			}
		}
	}
	walk(reflect.ValueOf(c).Elem())
	addURLPassword(c.Store.URL)
	return out
}
