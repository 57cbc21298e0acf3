// The chat playground. One conversation at a time over the /ws/chat/ socket, authenticated by the
// browser session. The history sent with each request holds only completed turns: a failed turn
// (an error or a lost connection) is shown but never sent again, and a stopped answer is kept,
// marked as stopped, with what had arrived.
(function () {
  "use strict";
  const form = document.getElementById("chat-form");
  if (!form) return;
  const log = document.getElementById("chat-log");
  const sendButton = document.getElementById("chat-send");
  const stopButton = document.getElementById("chat-stop");
  const resetButton = document.getElementById("chat-reset");
  const status = document.getElementById("chat-status");
  const prompt = form.elements.prompt;
  const render = window.SwitchboardMarkdown.render;
  let history = [];
  let socket = null;
  let current = null; // {id, user, text, el, body, started, firstTokenAt, waiting}
  let seq = 0;

  function setStreaming(on) {
    sendButton.disabled = on;
    stopButton.disabled = !on;
    form.setAttribute("aria-busy", on ? "true" : "false");
    status.textContent = on ? "Answering…" : "";
  }

  function connect() {
    return new Promise((resolve, reject) => {
      const scheme = location.protocol === "https:" ? "wss" : "ws";
      const ws = new WebSocket(`${scheme}://${location.host}/ws/chat/`);
      ws.onopen = () => { socket = ws; resolve(ws); };
      ws.onerror = () => reject(new Error("Could not connect to the chat server."));
      ws.onmessage = (event) => onFrame(JSON.parse(event.data));
      ws.onclose = () => {
        if (socket === ws) socket = null;
        if (current) fail("Connection lost: the server went away before the answer was complete.");
      };
    });
  }

  function turn(role, text) {
    const el = document.createElement("article");
    el.className = `turn ${role}`;
    const label = document.createElement("div");
    label.className = "who small muted";
    label.textContent = role === "user" ? "You" : "Assistant";
    const body = document.createElement("div");
    body.className = "body";
    if (text !== undefined) body.textContent = text;
    el.append(label, body);
    log.appendChild(el);
    el.scrollIntoView({ block: "end" });
    return { el, body };
  }

  function meta(el, text, cls) {
    const line = document.createElement("div");
    line.className = `meta small ${cls || "muted"}`;
    line.textContent = text;
    el.appendChild(line);
    return line;
  }

  function usageText(frame, elapsedMs, ttftMs) {
    const parts = [];
    if (frame.model) parts.push(frame.model);
    const usage = frame.usage || {};
    if (usage.prompt_tokens !== undefined) parts.push(`${usage.prompt_tokens} in / ${usage.completion_tokens} out tokens`);
    parts.push(`${(elapsedMs / 1000).toFixed(2)} s`);
    if (ttftMs !== null) parts.push(`first token ${Math.round(ttftMs)} ms`);
    if (usage.completion_tokens && elapsedMs > 0) parts.push(`${(usage.completion_tokens / (elapsedMs / 1000)).toFixed(1)} tok/s`);
    return parts.join(" · ");
  }

  function routeText(route) {
    const bits = [`auto chose ${route.model}`];
    if (route.mode) bits.push(`by ${route.mode}`);
    if (typeof route.score === "number") bits.push(`score ${route.score.toFixed(3)}`);
    if (route.reason) bits.push(route.reason);
    return bits.join(" · ");
  }

  function clearWaiting() {
    if (current && current.waiting) {
      current.waiting.remove();
      current.waiting = null;
    }
  }

  function finish() {
    clearWaiting();
    current = null;
    setStreaming(false);
    prompt.focus();
  }

  function fail(message) {
    // Kept out of the history: the next request must not carry this unanswered user turn.
    current.el.classList.add("failed");
    current.userEl.classList.add("failed");
    meta(current.el, message, "error-text").setAttribute("role", "alert");
    meta(current.userEl, "Not sent with later messages.", "muted");
    finish();
  }

  function onFrame(frame) {
    if (!current || frame.id !== current.id) return;
    if (frame.type === "approval") {
      // A policy holds the request for a person's decision (inference/workflows/holds.py): say so until
      // it is decided; the answer (or a 403 error frame) follows the decision. textContent: the id is data.
      const request = frame.request || {};
      if (request.status === "awaiting_approval") {
        if (!current.waiting) current.waiting = meta(current.el, "", "waiting");
        current.waiting.textContent = `Waiting for approval (request id ${request.id})`;
        status.textContent = "Waiting for approval…";
      } else {
        clearWaiting();
        status.textContent = "Answering…";
      }
    } else if (frame.type === "delta") {
      if (current.firstTokenAt === null) current.firstTokenAt = performance.now();
      current.text += frame.content || "";
      current.body.innerHTML = render(current.text); // render() escapes the model's text first
    } else if (frame.type === "done") {
      const now = performance.now();
      history.push(current.user, { role: "assistant", content: current.text });
      const ttft = current.firstTokenAt === null ? null : current.firstTokenAt - current.started;
      meta(current.el, usageText(frame, now - current.started, ttft));
      if (frame.route) meta(current.el, routeText(frame.route), "route");
      if (frame.finish_reason && frame.finish_reason !== "stop") meta(current.el, `finish reason: ${frame.finish_reason}`);
      finish();
    } else if (frame.type === "cancelled") {
      current.el.classList.add("stopped");
      meta(current.el, "Stopped", "stopped-text");
      if (current.text) history.push(current.user, { role: "assistant", content: current.text });
      else { current.userEl.classList.add("failed"); meta(current.userEl, "Not sent with later messages.", "muted"); }
      finish();
    } else if (frame.type === "error") {
      const error = frame.error || {};
      fail(`Error${frame.status ? ` ${frame.status}` : ""}: ${error.message || "the request failed"}`);
    }
  }

  function numberOrNull(value) {
    return value === "" || value === null ? null : Number(value);
  }

  function requestBody(userTurn) {
    const data = new FormData(form);
    const messages = [];
    const system = (data.get("system") || "").trim();
    if (system) messages.push({ role: "system", content: system });
    messages.push(...history, userTurn);
    const body = { model: data.get("model"), messages };
    const temperature = numberOrNull(data.get("temperature"));
    if (temperature !== null) body.temperature = temperature;
    const maxTokens = numberOrNull(data.get("max_tokens"));
    if (maxTokens !== null) body.max_tokens = maxTokens;
    const stop = (data.get("stop") || "").split(",").map((s) => s.trim()).filter(Boolean).slice(0, 4);
    if (stop.length) body.stop = stop;
    return body;
  }

  async function send() {
    if (current) return; // one answer at a time: Send is disabled while one streams
    const text = prompt.value.trim();
    if (!text || !form.reportValidity()) return;
    const userTurn = { role: "user", content: text };
    const userView = turn("user", text);
    const answer = turn("assistant");
    current = { id: `c${++seq}`, user: userTurn, text: "", el: answer.el, body: answer.body, userEl: userView.el,
                started: performance.now(), firstTokenAt: null, waiting: null };
    setStreaming(true);
    prompt.value = "";
    try {
      if (!socket || socket.readyState !== WebSocket.OPEN) await connect();
      socket.send(JSON.stringify({ id: current.id, ...requestBody(userTurn) }));
    } catch (err) {
      if (current) fail(err.message);
    }
  }

  form.addEventListener("submit", (event) => { event.preventDefault(); send(); });
  prompt.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) { event.preventDefault(); send(); }
  });
  stopButton.addEventListener("click", () => {
    if (current && socket && socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify({ type: "cancel", id: current.id }));
  });
  resetButton.addEventListener("click", () => {
    if (current) return;
    history = [];
    log.replaceChildren();
    prompt.focus();
  });
  setStreaming(false);
})();
