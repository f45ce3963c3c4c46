"""A small Claude Agent SDK (Python) program that agentd hosts as an agent.

UNTESTED: the Python SDK (pip install claude-agent-sdk) could not be
installed where agentd was built (no PyPI access). The TypeScript example in
examples/agent-sdk-ts is the tested one; this follows the same contract
(docs/agent-sdk.md):

  stdin:  {"run_id", "conversation_id", "message", "history", "resume_session_id", ...}
  env:    ANTHROPIC_BASE_URL / ANTHROPIC_API_KEY (agentd's gateway, a run-scoped key), AGENTD_*
  stdout: the SDK's messages as stream-JSON, one JSON object a line; the last is the result.

The Python SDK yields typed messages rather than the wire JSON, so to_wire
turns them back into the stream-JSON shapes agentd reads.
"""

import asyncio
import json
import os
import sys

from claude_agent_sdk import (
    AssistantMessage,
    ClaudeAgentOptions,
    ResultMessage,
    SystemMessage,
    TextBlock,
    ToolResultBlock,
    ToolUseBlock,
    UserMessage,
    create_sdk_mcp_server,
    query,
    tool,
)


@tool("weather", "The weather in a city", {"city": str})
async def weather(args):
    return {"content": [{"type": "text", "text": f"sunny and 21C in {args['city']}"}]}


def block(b):
    if isinstance(b, TextBlock):
        return {"type": "text", "text": b.text}
    if isinstance(b, ToolUseBlock):
        return {"type": "tool_use", "id": b.id, "name": b.name, "input": b.input}
    if isinstance(b, ToolResultBlock):
        return {"type": "tool_result", "tool_use_id": b.tool_use_id, "content": b.content, "is_error": bool(b.is_error)}
    return {"type": "other"}


def to_wire(msg):
    if isinstance(msg, SystemMessage):
        return {"type": "system", "subtype": msg.subtype, **(msg.data or {})}
    if isinstance(msg, AssistantMessage):
        return {"type": "assistant", "message": {"content": [block(b) for b in msg.content]}}
    if isinstance(msg, UserMessage):
        content = msg.content if isinstance(msg.content, str) else [block(b) for b in msg.content]
        return {"type": "user", "message": {"content": content}}
    if isinstance(msg, ResultMessage):
        return {
            "type": "result",
            "subtype": msg.subtype,
            "is_error": msg.is_error,
            "result": msg.result or "",
            "session_id": msg.session_id,
        }
    return None


async def main():
    data = json.load(sys.stdin)
    history = "\n".join(
        f"{m['role']}: " + " ".join(b.get("text", "") for b in m["content"] if b.get("type") == "text")
        for m in data.get("history", [])
    )
    options = ClaudeAgentOptions(
        model=os.environ.get("DEMO_MODEL", "claude-sonnet-4-5"),
        tools=[],
        mcp_servers={"demo": create_sdk_mcp_server(name="demo", version="1.0.0", tools=[weather])},
        allowed_tools=["mcp__demo__weather"],
        setting_sources=[],
        max_turns=8,
        system_prompt=f"The conversation so far:\n{history}" if history else None,
    )
    async for msg in query(prompt=data.get("message", ""), options=options):
        wire = to_wire(msg)
        if wire is not None:
            sys.stdout.write(json.dumps(wire) + "\n")
            sys.stdout.flush()


if __name__ == "__main__":
    asyncio.run(main())
