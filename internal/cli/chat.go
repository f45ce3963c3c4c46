package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"
)

// maxLine is the longest message line chat reads.
const maxLine = 1 << 20

// chatRequest is the body of POST /v1/chat.
type chatRequest struct {
	Agent          string `json:"agent"`
	Message        string `json:"message"`
	ConversationID string `json:"conversation_id,omitempty"`
	Stream         bool   `json:"stream"`
}

// cmdChat is `agentd chat [-c CONV] AGENT`: every line of stdin is a
// message; the answer is streamed as it is generated. On a terminal it
// prompts and a failed turn does not end the session; from a pipe the
// first failure ends it with an error.
func cmdChat(ctx context.Context, args []string, stdio IO) error {
	fs := newFlagSet("chat", stdio.Stderr)
	c := addCommon(fs, stdio.Environ)
	conv := fs.String("c", "", "continue this conversation (its id)")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if err := c.check(); err != nil {
		return err
	}
	if len(pos) != 1 {
		return fmt.Errorf("%w: agentd chat [-c CONV] AGENT (one agent; GET /v1/agents lists them)", ErrUsage)
	}
	s := &chatSession{client: c.client(), agent: pos[0], conv: *conv, json: c.json(), out: stdio.Stdout,
		errOut: stdio.Stderr, interactive: isTerminal(stdio.Stdin)}
	s.render = &renderer{w: stdio.Stdout}
	return s.run(ctx, stdio.Stdin)
}

type chatSession struct {
	client      *Client
	agent, conv string
	json        bool
	interactive bool
	out, errOut io.Writer
	render      *renderer
}

func (s *chatSession) run(ctx context.Context, stdin io.Reader) error {
	if s.interactive {
		fmt.Fprintf(s.errOut, "chat with %s at %s; one message per line, Ctrl-D to end\n", s.agent, s.client.BaseURL)
	}
	sc := bufio.NewScanner(stdin)
	sc.Buffer(make([]byte, 64<<10), maxLine)
	var failed error
	for {
		if s.interactive {
			fmt.Fprint(s.out, "> ")
		}
		if !sc.Scan() {
			break
		}
		msg := strings.TrimSpace(sc.Text())
		if msg == "" {
			continue
		}
		if msg == "/exit" || msg == "/quit" {
			break
		}
		err := s.turn(ctx, msg)
		if err == nil {
			continue
		}
		if ctx.Err() != nil || !s.interactive {
			failed = err
			break
		}
		fmt.Fprintln(s.errOut, "error:", err)
		var ue *UnreachableError
		if errors.As(err, &ue) {
			failed = err
			break
		}
	}
	if s.interactive {
		fmt.Fprintln(s.out)
	}
	if err := sc.Err(); err != nil && failed == nil {
		failed = fmt.Errorf("read stdin: %w", err)
	}
	if s.conv != "" {
		fmt.Fprintf(s.errOut, "conversation %s (continue with: agentd chat -c %s %s)\n", s.conv, s.conv, s.agent)
	}
	return failed
}

// turn sends one message and streams its answer.
func (s *chatSession) turn(ctx context.Context, msg string) error {
	req, err := s.client.newRequest(ctx, http.MethodPost, "/v1/chat",
		chatRequest{Agent: s.agent, Message: msg, ConversationID: s.conv, Stream: true})
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "text/event-stream")
	resp, err := s.client.send(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mt != "text/event-stream" {
		// agents[].on_unavailable: enqueue answers 202 with a queued run.
		var rb runBody
		raw, _ := io.ReadAll(resp.Body)
		if resp.StatusCode == http.StatusAccepted && json.Unmarshal(raw, &rb) == nil && rb.ID != "" {
			fmt.Fprintf(s.errOut, "the model is unavailable: the message was queued as run %s (follow it: agentd runs tail %s)\n", rb.ID, rb.ID)
			return nil
		}
		return fmt.Errorf("unexpected answer %d %s: %s", resp.StatusCode, resp.Header.Get("Content-Type"), shorten(string(raw), 200))
	}
	rd := newSSEReader(resp.Body)
	for {
		ev, err := rd.Next()
		if err != nil {
			s.render.newline()
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("the answer stream ended before the answer: %w", err)
		}
		if s.json {
			if err := writeJSONEvent(s.out, ev); err != nil {
				return err
			}
		} else {
			s.render.render(ev)
		}
		switch ev.Name {
		case "done":
			var d doneData
			if err := json.Unmarshal(ev.Data, &d); err == nil && d.ConversationID != "" {
				s.conv = d.ConversationID
			}
			drain(resp.Body)
			return nil
		case "error":
			drain(resp.Body)
			return eventError(ev)
		}
	}
}

// drain reads the stream to its end: the server releases the conversation
// just after its last event and closes the stream after that, so a next
// message sent before the end could find the conversation still busy
// (409 conflict).
func drain(body io.Reader) { _, _ = io.Copy(io.Discard, io.LimitReader(body, 1<<20)) }
