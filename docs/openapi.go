// Package docs holds agentd's HTTP API contract (openapi.yaml), embedded so
// the server can serve it at GET /openapi.json.
package docs

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"sync"

	"go.yaml.in/yaml/v4"
)

// OpenAPIYAML is docs/openapi.yaml as committed.
//
//go:embed openapi.yaml
var OpenAPIYAML []byte

var openAPIJSON = sync.OnceValues(func() ([]byte, error) {
	var doc any
	if err := yaml.Unmarshal(OpenAPIYAML, &doc); err != nil {
		return nil, fmt.Errorf("docs/openapi.yaml: %w", err)
	}
	b, err := json.Marshal(doc)
	if err != nil {
		return nil, fmt.Errorf("docs/openapi.yaml to JSON: %w", err)
	}
	return b, nil
})

// OpenAPIJSON returns the contract as JSON (converted once).
func OpenAPIJSON() ([]byte, error) { return openAPIJSON() }
