// A small Claude Agent SDK program that agentd hosts as an agent
// (agents[].runtime, docs/agent-sdk.md). agentd starts it once per run:
//   stdin: {"run_id", "conversation_id", "agent", "message", "history", "resume_session_id", ...}
//   env:   ANTHROPIC_BASE_URL / ANTHROPIC_API_KEY (agentd's gateway, a key valid for this run only),
//          AGENTD_RUN_ID, AGENTD_CONVERSATION_ID, AGENTD_ATTEMPT, AGENTD_SESSION_STORE_URL, ...
//   stdout: the SDK's messages, one JSON object a line (stream-JSON); the last one is the result.
// Beyond reading stdin and printing the messages, it knows agentd only through
// its session store (agentd-session-store.mjs): the SDK session lives in agentd.
import { query, tool, createSdkMcpServer } from '@anthropic-ai/claude-agent-sdk';
import { z } from 'zod';
import { writeFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AgentdSessionStore } from './agentd-session-store.mjs';

const input = JSON.parse(await new Promise((resolve) => {
  let s = '';
  process.stdin.setEncoding('utf8');
  process.stdin.on('data', (c) => (s += c));
  process.stdin.on('end', () => resolve(s || '{}'));
}));

if (process.env.DEMO_PID_FILE) writeFileSync(process.env.DEMO_PID_FILE, String(process.pid));

// Demo hooks, to show agentd's lifecycle handling (see docs/agent-sdk.md):
// "/crash" exits non-zero after writing to stderr.
if (input.message === '/crash') {
  console.error('demo: the program crashes on purpose (run ' + process.env.AGENTD_RUN_ID + ')');
  process.exit(3);
}

// Two tools of this program, served in-process to the SDK.
const demo = createSdkMcpServer({
  name: 'demo',
  version: '1.0.0',
  tools: [
    tool('weather', 'The weather in a city', { city: z.string() }, async ({ city }) => ({
      content: [{ type: 'text', text: `sunny and 21C in ${city}` }],
    })),
    tool('slow', 'A task that takes a long time', { task: z.string() }, async () => {
      await new Promise((r) => setTimeout(r, 3_600_000));
      return { content: [{ type: 'text', text: 'done' }] };
    }),
  ],
});

// Session continuity through agentd's store (docs/agent-sdk.md): the SDK
// mirrors this run's session transcript to agentd, and resumes
//   - on a retry of this run: the session its earlier attempt started
//     (resume_session_id), if agentd's store has it;
//   - else on a later turn of the conversation: the conversation's session
//     (conversation_session_id, set by agentd only when its store has it).
// The local transcript goes to a temporary CLAUDE_CONFIG_DIR removed on exit:
// agentd's store is the copy that counts, whichever instance runs the next turn.
let sessionStore;
let resume;
let env;
if (input.session_store_url || process.env.AGENTD_SESSION_STORE_URL) {
  sessionStore = new AgentdSessionStore({ url: input.session_store_url || process.env.AGENTD_SESSION_STORE_URL });
  if (input.resume_session_id && (await sessionStore.load({ projectKey: '', sessionId: input.resume_session_id }))) {
    resume = input.resume_session_id;
  } else if (input.conversation_session_id) {
    resume = input.conversation_session_id;
  }
  const configDir = mkdtempSync(join(tmpdir(), 'agentd-sdk-'));
  process.on('exit', () => rmSync(configDir, { recursive: true, force: true }));
  // agentd stops a program with SIGTERM (cancel, timeout, shutdown): clean up then too.
  process.on('SIGTERM', () => process.exit(143));
  env = { ...process.env, CLAUDE_CONFIG_DIR: configDir };
}

// The conversation so far, for a program that does not resume an SDK session.
const history = resume ? '' : (input.history || [])
  .map((m) => `${m.role}: ${(Array.isArray(m.content) ? m.content : [{ type: 'text', text: String(m.content) }])
    .filter((b) => b.type === 'text').map((b) => b.text).join('\n')}`)
  .join('\n');

for await (const msg of query({
  prompt: input.message || '',
  options: {
    model: process.env.DEMO_MODEL || 'claude-sonnet-4-5',
    tools: [], // no built-in Claude Code tools: only this program's own
    mcpServers: { demo },
    allowedTools: ['mcp__demo__weather', 'mcp__demo__slow'],
    settingSources: [],
    maxTurns: 8,
    systemPrompt: history ? `The conversation so far:\n${history}` : undefined,
    sessionStore,
    // Every transcript line is mirrored as it is written, not at the end of
    // the turn: a retry after a crash mid-turn finds what the attempt did.
    sessionStoreFlush: sessionStore ? 'eager' : undefined,
    resume,
    env,
  },
})) {
  process.stdout.write(JSON.stringify(msg) + '\n');
}
