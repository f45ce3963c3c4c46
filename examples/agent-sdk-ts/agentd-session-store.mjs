// A SessionStore (@anthropic-ai/claude-agent-sdk, options.sessionStore) that
// keeps the SDK session transcript in agentd's store (docs/agent-sdk.md,
// "Session continuity"), so the next turn of a conversation, or a retried
// run, on any agentd instance resumes the session.
//
// It talks to the endpoints agentd serves to the program on its loopback
// gateway, with the run's key:
//   POST {base}/{session_id}/entries[?subpath=]  {"entries": [...]}
//   GET  {base}/{session_id}/entries[?subpath=]  → {"entries": [...]} (404: never written)
//   GET  {base}/{session_id}/subpaths            → {"subpaths": [...]}
// base is AGENTD_SESSION_STORE_URL (set by agentd when its store serves
// sessions), the key ANTHROPIC_API_KEY. Sessions are scoped to the run's
// tenant by agentd; projectKey is not part of the key.

// agentd's limits of one append (internal/run/program_sessions.go): a batch
// is sent in chunks under them.
const MAX_BATCH = 1000;
const MAX_BODY = 32 << 20;
const MAX_ENTRY = 8 << 20;

export class AgentdSessionStore {
  constructor({ url = process.env.AGENTD_SESSION_STORE_URL, apiKey = process.env.ANTHROPIC_API_KEY } = {}) {
    if (!url) throw new Error('AgentdSessionStore: no AGENTD_SESSION_STORE_URL (agentd does not serve sessions to this program)');
    if (!apiKey) throw new Error('AgentdSessionStore: no ANTHROPIC_API_KEY (the run key)');
    this.url = url.replace(/\/+$/, '');
    this.apiKey = apiKey;
  }

  #entriesURL(key, what = 'entries') {
    const u = `${this.url}/${encodeURIComponent(key.sessionId)}/${what}`;
    return key.subpath ? `${u}?subpath=${encodeURIComponent(key.subpath)}` : u;
  }

  async #call(method, url, body) {
    const res = await fetch(url, {
      method,
      headers: { 'x-api-key': this.apiKey, ...(body ? { 'content-type': 'application/json' } : {}) },
      body,
    });
    if (res.status === 404 && method === 'GET') return null;
    if (!res.ok) {
      let msg = await res.text();
      try { msg = JSON.parse(msg).error.message; } catch { /* the raw body */ }
      throw new Error(`agentd session store: ${method} ${url}: ${res.status}: ${msg}`);
    }
    return res.status === 204 ? undefined : res.json();
  }

  async append(key, entries) {
    let chunk = [];
    let size = 0;
    const flush = async () => {
      if (chunk.length === 0) return;
      await this.#call('POST', this.#entriesURL(key), `{"entries":[${chunk.join(',')}]}`);
      chunk = [];
      size = 0;
    };
    for (const e of entries) {
      const s = JSON.stringify(e);
      if (Buffer.byteLength(s) > MAX_ENTRY) {
        throw new Error(`agentd session store: an entry of ${Buffer.byteLength(s)} bytes is over agentd's limit (${MAX_ENTRY})`);
      }
      if (chunk.length === MAX_BATCH || size + Buffer.byteLength(s) + 64 > MAX_BODY) await flush();
      chunk.push(s);
      size += Buffer.byteLength(s) + 1;
    }
    await flush();
  }

  async load(key) {
    const out = await this.#call('GET', this.#entriesURL(key));
    return out ? out.entries : null;
  }

  async listSubkeys(key) {
    const out = await this.#call('GET', this.#entriesURL(key, 'subpaths'));
    return out ? out.subpaths : [];
  }
}
