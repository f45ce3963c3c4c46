// Command mcp-demo is a small, harmless MCP server for trying agentd's MCP
// support: echo, dice (seeded, so answers are reproducible), and an
// in-memory key-value store (kv_get, kv_put).
//
// It speaks MCP over stdio by default (agentd starts it); with -http it
// serves streamable HTTP instead:
//
//	go build -o bin/mcp-demo ./examples/mcp-demo   # then command: [./bin/mcp-demo]
//	go run ./examples/mcp-demo                     # stdio (slow to start: compiles first)
//	go run ./examples/mcp-demo -http 127.0.0.1:8931  # url: http://127.0.0.1:8931/mcp
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"math/rand/v2"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

func main() {
	seed := flag.Uint64("seed", 1, "seed of the dice tool")
	addr := flag.String("http", "", "serve streamable HTTP on this address (path /mcp) instead of stdio")
	flag.Parse()
	srv := NewServer(*seed)
	if *addr != "" {
		mux := http.NewServeMux()
		mux.Handle("/mcp", mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return srv }, nil))
		log.Printf("mcp-demo: serving streamable HTTP on http://%s/mcp", *addr)
		hs := &http.Server{Addr: *addr, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		log.Fatal(hs.ListenAndServe())
	}
	if err := srv.Run(context.Background(), &mcp.StdioTransport{}); err != nil && !errors.Is(err, context.Canceled) {
		fmt.Fprintln(os.Stderr, "mcp-demo:", err)
		os.Exit(1)
	}
}

type echoIn struct {
	Text string `json:"text" jsonschema:"the text to send back"`
}

type diceIn struct {
	Sides int `json:"sides,omitempty" jsonschema:"sides of each die (default 6, at most 1000)"`
	Count int `json:"count,omitempty" jsonschema:"how many dice (default 1, at most 100)"`
}

type diceOut struct {
	Rolls []int `json:"rolls"`
	Total int   `json:"total"`
}

type kvGetIn struct {
	Key string `json:"key" jsonschema:"the key to read"`
}

type kvPutIn struct {
	Key   string `json:"key" jsonschema:"the key to write"`
	Value string `json:"value" jsonschema:"the value to store"`
}

type kvOut struct {
	Key   string `json:"key"`
	Value string `json:"value"`
	Found bool   `json:"found"`
}

// NewServer returns the demo server; dice rolls follow seed.
func NewServer(seed uint64) *mcp.Server {
	s := mcp.NewServer(&mcp.Implementation{Name: "agentd-mcp-demo", Version: "1.0.0"}, nil)
	var mu sync.Mutex
	rng := rand.New(rand.NewPCG(seed, seed))
	kv := map[string]string{}

	mcp.AddTool(s, &mcp.Tool{Name: "echo", Description: "Returns the text it is given."},
		func(_ context.Context, _ *mcp.CallToolRequest, in echoIn) (*mcp.CallToolResult, any, error) {
			return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: in.Text}}}, nil, nil
		})
	mcp.AddTool(s, &mcp.Tool{Name: "dice", Description: "Rolls dice (seeded pseudo-random numbers: the same sequence after every restart)."},
		func(_ context.Context, _ *mcp.CallToolRequest, in diceIn) (*mcp.CallToolResult, diceOut, error) {
			if in.Sides == 0 {
				in.Sides = 6
			}
			if in.Count == 0 {
				in.Count = 1
			}
			if in.Sides < 2 || in.Sides > 1000 || in.Count < 1 || in.Count > 100 {
				return nil, diceOut{}, errors.New("sides must be 2-1000 and count 1-100")
			}
			mu.Lock()
			defer mu.Unlock()
			out := diceOut{Rolls: make([]int, in.Count)}
			for i := range out.Rolls {
				out.Rolls[i] = 1 + rng.IntN(in.Sides)
				out.Total += out.Rolls[i]
			}
			return nil, out, nil
		})
	mcp.AddTool(s, &mcp.Tool{Name: "kv_get", Description: "Reads a value from an in-memory key-value store (lost when the server restarts)."},
		func(_ context.Context, _ *mcp.CallToolRequest, in kvGetIn) (*mcp.CallToolResult, kvOut, error) {
			mu.Lock()
			defer mu.Unlock()
			v, ok := kv[in.Key]
			return nil, kvOut{Key: in.Key, Value: v, Found: ok}, nil
		})
	mcp.AddTool(s, &mcp.Tool{Name: "kv_put", Description: "Writes a value to the in-memory key-value store. Repeating a call with the same idempotency key (_meta) has no further effect."},
		func(_ context.Context, req *mcp.CallToolRequest, in kvPutIn) (*mcp.CallToolResult, kvOut, error) {
			if strings.TrimSpace(in.Key) == "" {
				return nil, kvOut{}, errors.New("key must not be empty")
			}
			mu.Lock()
			defer mu.Unlock()
			if key, _ := req.Params.Meta["io.agentd/idempotency-key"].(string); key != "" {
				if _, done := kv["\x00idem:"+key]; done {
					return nil, kvOut{Key: in.Key, Value: kv[in.Key], Found: true}, nil
				}
				kv["\x00idem:"+key] = ""
			}
			kv[in.Key] = in.Value
			return nil, kvOut{Key: in.Key, Value: in.Value, Found: true}, nil
		})
	return s
}
