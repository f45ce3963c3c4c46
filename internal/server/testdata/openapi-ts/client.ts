// A round trip through agentd with a client generated from its OpenAPI
// document (openapi-typescript types + openapi-fetch): tsc checks the calls
// against the generated types, node runs them against a live agentd.
import createClient from "openapi-fetch";
import type { paths } from "./agentd.js";

const client = createClient<paths>({ baseUrl: process.argv[2] });

const agents = await client.GET("/v1/agents");
if (!agents.data) throw new Error("GET /v1/agents: " + JSON.stringify(agents.error));

const chat = await client.POST("/v1/chat", { body: { agent: "demo", message: "hello from TypeScript" } });
if (!chat.data) throw new Error("POST /v1/chat: " + JSON.stringify(chat.error));
// 200 is JSON or, with stream: true, text/event-stream; 202 is a queued
// run (admission.overflow: queue): narrow to the JSON answer.
if (typeof chat.data === "string") throw new Error("POST /v1/chat answered a stream without stream: true");
if (!("run_id" in chat.data)) throw new Error("POST /v1/chat overflowed to a queued run: " + chat.data.id);

const run = await client.GET("/v1/runs/{id}", { params: { path: { id: chat.data.run_id } } });
if (!run.data) throw new Error("GET /v1/runs/{id}: " + JSON.stringify(run.error));

const missing = await client.GET("/v1/runs/{id}", { params: { path: { id: "run_missing" } } });

console.log(JSON.stringify({
  agents: agents.data.agents.map((a) => a.name),
  text: chat.data.text,
  steps: chat.data.steps,
  run_status: run.data.status,
  missing_status: missing.response.status,
  missing_type: missing.error?.error.type,
}));
