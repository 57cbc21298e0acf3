// Streams one conversation at a time over the /ws/chat/ socket; the browser session authenticates it.
(function () {
  const form = document.getElementById("chat-form");
  const log = document.getElementById("chat-log");
  const history = [];
  let socket = null;
  let current = null;
  let seq = 0;

  function connect() {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    socket = new WebSocket(`${scheme}://${location.host}/ws/chat/`);
    socket.onmessage = (event) => {
      const frame = JSON.parse(event.data);
      if (!current || frame.id !== current.id) return;
      if (frame.type === "delta") current.el.textContent += frame.content;
      if (frame.type === "done") { history.push({ role: "assistant", content: current.el.textContent }); current = null; }
      if (frame.type === "error") { current.el.classList.add("error"); current.el.textContent += `\n[${frame.error.message}]`; current = null; }
    };
    return new Promise((resolve) => { socket.onopen = resolve; });
  }

  function turn(cls, text) {
    const el = document.createElement("div");
    el.className = `turn ${cls}`;
    el.textContent = text;
    log.appendChild(el);
    return el;
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!socket || socket.readyState !== WebSocket.OPEN) await connect();
    const data = new FormData(form);
    const prompt = data.get("prompt");
    history.push({ role: "user", content: prompt });
    turn("user", prompt);
    current = { id: `c${++seq}`, el: turn("assistant", "") };
    socket.send(JSON.stringify({ id: current.id, model: data.get("model"), messages: history }));
    form.prompt.value = "";
  });

  document.getElementById("chat-cancel").addEventListener("click", () => {
    if (current && socket) socket.send(JSON.stringify({ type: "cancel", id: current.id }));
  });
})();
