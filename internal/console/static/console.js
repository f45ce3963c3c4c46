// agentd console: live run events (EventSource on the run's event
// stream) and keyboard shortcuts. No framework, no inline script.
(function () {
  "use strict";

  // Live events: the timeline of a running run follows its stream.
  var tl = document.getElementById("timeline");
  if (tl && tl.dataset.events && window.EventSource) {
    var url = tl.dataset.events + "?after=" + encodeURIComponent(tl.dataset.after || "0");
    var es = new EventSource(url);
    var types = ["start", "text_delta", "tool_use", "tool_result", "usage", "resumed", "done", "error"];
    var row = function (seq, type, text) {
      var li = document.createElement("li");
      li.className = "ev ev-" + type;
      li.dataset.seq = seq;
      li.dataset.live = "1"; // arrived over the stream (the browser tests look for it)
      var s = document.createElement("span"); s.className = "seq"; s.textContent = "#" + seq;
      var t = document.createElement("span"); t.className = "type"; t.textContent = type;
      var w = document.createElement("time"); var now = new Date();
      w.dateTime = now.toISOString(); w.title = now.toISOString(); w.textContent = "just now";
      var m = document.createElement("span"); m.className = "sum"; m.textContent = text;
      li.append(s, " ", t, " ", w, " ", m);
      tl.appendChild(li);
      tl.scrollTop = tl.scrollHeight;
      return li;
    };
    types.forEach(function (type) {
      es.addEventListener(type, function (e) {
        var d = {};
        try { d = JSON.parse(e.data); } catch (err) { /* keep {} */ }
        var last = tl.lastElementChild;
        if (type === "text_delta" && last && last.classList.contains("ev-text_delta")) {
          last.dataset.seq = e.lastEventId;
          last.querySelector(".seq").textContent = "#" + e.lastEventId;
          last.querySelector(".sum").textContent += d.text || "";
          return;
        }
        var text = "";
        // Tool inputs and outputs are never shown live: the page shows
        // them redacted once it reloads.
        if (type === "text_delta") text = d.text || "";
        else if (type === "tool_use" || type === "tool_result") text = (d.name || "") + " (details after reload)";
        else if (type === "usage") text = (d.model || "") + ": " + (d.input_tokens || 0) + " in, " + (d.output_tokens || 0) + " out";
        else if (type === "error") text = (d.type || "") + ": " + (d.message || "");
        else if (type === "start") text = "agent " + (d.agent || "") + ", model " + (d.model || "");
        row(e.lastEventId, type, text);
        var st = document.querySelector("#run-status .status");
        var now = { start: "running", resumed: "running", done: "succeeded", error: "failed" }[type];
        if (st && now) { st.textContent = now; st.className = "status s-" + now; }
        if (type === "done" || type === "error") {
          es.close();
          // The status, model calls and tool calls are rendered by the server.
          setTimeout(function () { window.location.reload(); }, 1500);
        }
      });
    });
  }

  // Live session events: the timeline of a running Managed Agents session
  // follows the session's stream (named events, ids "sevt_..."). The
  // stream starts at the current turn, so events already on the page are
  // skipped by id.
  var stl = document.getElementById("session-timeline");
  if (stl && stl.dataset.events && window.EventSource) {
    var ses = new EventSource(stl.dataset.events);
    var stypes = ["user.message", "user.interrupt", "user.tool_confirmation", "user.custom_tool_result",
      "agent.message", "agent.tool_use", "agent.custom_tool_use", "agent.mcp_tool_use", "agent.tool_result",
      "agent.mcp_tool_result", "session.status_running", "session.status_idle", "session.status_terminated",
      "session.error", "span.model_request_start", "span.model_request_end"];
    stypes.forEach(function (type) {
      ses.addEventListener(type, function (e) {
        var d = {};
        try { d = JSON.parse(e.data); } catch (err) { /* keep {} */ }
        var id = e.lastEventId || d.id || "";
        if (id && stl.querySelector('li[data-id="' + CSS.escape(id) + '"]')) return;
        var text = "";
        var blocks = d.content || [];
        // Tool inputs and results are never shown live: the page shows
        // them redacted once it reloads.
        if (type === "user.message" || type === "agent.message") {
          text = blocks.map(function (b) { return b.type === "text" ? b.text : ""; }).join("");
        } else if (type.indexOf("_tool_use") > 0) text = (d.name || "") + " (details after reload)";
        else if (type === "session.status_idle") text = "stop_reason " + ((d.stop_reason || {}).type || "");
        else if (type === "session.error") text = ((d.error || {}).type || "") + ": " + ((d.error || {}).message || "");
        else if (type === "span.model_request_end") {
          var u = d.model_usage || {};
          text = (u.input_tokens || 0) + " in, " + (u.output_tokens || 0) + " out";
        }
        var li = document.createElement("li");
        li.className = "ev ev-" + type;
        li.dataset.id = id;
        li.dataset.live = "1"; // arrived over the stream (the browser tests look for it)
        var t = document.createElement("span"); t.className = "type"; t.textContent = type;
        var w = document.createElement("time"); var now = new Date();
        w.dateTime = now.toISOString(); w.title = now.toISOString(); w.textContent = "just now";
        var m = document.createElement("span"); m.className = "sum"; m.textContent = text;
        li.append(t, " ", w, " ", m);
        stl.appendChild(li);
        stl.scrollTop = stl.scrollHeight;
        if (type === "session.status_idle" || type === "session.status_terminated" || type === "session.error") {
          ses.close();
          // Pending confirmations, usage and turns are rendered by the server.
          setTimeout(function () { window.location.reload(); }, 1500);
        }
      });
    });
  }

  // Keyboard: "g" then a letter follows the nav link with that data-key;
  // "/" focuses the page's first filter field.
  var pending = false;
  document.addEventListener("keydown", function (e) {
    var tag = (e.target && e.target.tagName) || "";
    if (e.ctrlKey || e.metaKey || e.altKey || tag === "INPUT" || tag === "SELECT" || tag === "TEXTAREA") return;
    if (pending) {
      pending = false;
      var a = document.querySelector('nav a[data-key="' + e.key + '"]');
      if (a) { e.preventDefault(); window.location.href = a.href; }
      return;
    }
    if (e.key === "g") { pending = true; setTimeout(function () { pending = false; }, 1500); return; }
    if (e.key === "/") {
      var f = document.querySelector("[data-filter]");
      if (f) { e.preventDefault(); f.focus(); }
    }
  });
})();
