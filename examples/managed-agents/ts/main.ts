// A Claude Managed Agents program, written with @anthropic-ai/sdk, run
// against agentd: only the base URL and the API key (an agentd client
// key) say where it runs.
//
//   AGENTD_URL=http://127.0.0.1:8080 AGENTD_API_KEY=agd_... node out/main.js
//
// It creates an environment and an agent with a custom tool, opens a
// session, follows its event stream, answers the tool call, and prints a
// JSON summary of the turn.
import Anthropic from "@anthropic-ai/sdk";

const client = new Anthropic({
  baseURL: process.env.AGENTD_URL ?? "http://127.0.0.1:8080",
  apiKey: process.env.AGENTD_API_KEY,
});

const environment = await client.beta.environments.create({ name: "example" });
const agent = await client.beta.agents.create({
  name: "weather",
  model: "claude-sonnet-4-5",
  system: "You report the weather.",
  tools: [{
    type: "custom",
    name: "lookup",
    description: "Looks up the weather in a city",
    input_schema: { type: "object", properties: { q: { type: "string" } }, required: ["q"] },
  }],
});
const session = await client.beta.sessions.create({ agent: agent.id, environment_id: environment.id });

// Open the stream first, then send: nothing of the turn is missed.
const stream = await client.beta.sessions.events.stream(session.id);
await client.beta.sessions.events.send(session.id, {
  events: [{ type: "user.message", content: [{ type: "text", text: "please lookup the weather in Oslo" }] }],
});

const toolCalls: string[] = [];
let text = "";
let stopReason = "";
for await (const event of stream) {
  if (event.type === "agent.custom_tool_use") {
    toolCalls.push(event.name);
    await client.beta.sessions.events.send(session.id, {
      events: [{ type: "user.custom_tool_result", custom_tool_use_id: event.id, content: [{ type: "text", text: "sunny, 21 degrees" }] }],
    });
  } else if (event.type === "agent.message") {
    text += event.content.map((block) => (block.type === "text" ? block.text : "")).join("");
  } else if (event.type === "session.status_idle" && event.stop_reason.type !== "requires_action") {
    stopReason = event.stop_reason.type;
    break;
  }
}
stream.controller.abort();

const done = await client.beta.sessions.retrieve(session.id);
console.log(JSON.stringify({
  session_id: session.id,
  tool_calls: toolCalls,
  text,
  stop_reason: stopReason,
  status: done.status,
  input_tokens: done.usage.input_tokens,
  output_tokens: done.usage.output_tokens,
}));
