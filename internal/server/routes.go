package server

import (
	"fmt"
	"net/http"
	"slices"

	"github.com/agentd/agentd/docs"
)

// routeMux is the server's ServeMux that also records every pattern it
// registers, so the OpenAPI contract test can compare the routes served with
// docs/openapi.yaml (http.ServeMux cannot list its patterns).
type routeMux struct {
	*http.ServeMux
	patterns []string
}

func newRouteMux() *routeMux { return &routeMux{ServeMux: http.NewServeMux()} }

// Handle registers h for pattern and records the pattern.
func (m *routeMux) Handle(pattern string, h http.Handler) {
	m.patterns = append(m.patterns, pattern)
	m.ServeMux.Handle(pattern, h)
}

// HandleFunc registers h for pattern and records the pattern.
func (m *routeMux) HandleFunc(pattern string, h func(http.ResponseWriter, *http.Request)) {
	m.patterns = append(m.patterns, pattern)
	m.ServeMux.HandleFunc(pattern, h)
}

// Routes returns the patterns the server registered ("GET /v1/runs/{id}",
// "/console/", ...), sorted: those of New and of Mount.
func (s *Server) Routes() []string {
	out := slices.Clone(s.mux.patterns)
	slices.Sort(out)
	return out
}

// handleOpenAPI serves GET /openapi.json: docs/openapi.yaml as JSON. It
// needs no key, like the health probes: the contract is public.
func (s *Server) handleOpenAPI(w http.ResponseWriter, r *http.Request) {
	body, err := docs.OpenAPIJSON()
	if err != nil { // the embedded spec is checked by tests; a 500 if not
		s.writeError(w, r, fmt.Errorf("openapi: the embedded spec does not convert: %w", err))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "public, max-age=300")
	_, _ = w.Write(body)
}
