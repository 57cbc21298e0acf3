// static/chat.js's handling of the socket's frames, under `node --test` with a small stand-in for the
// page (the elements chat.js touches) and for the browser's WebSocket: no server, no browser.
// tests/dashboard/test_chat_js.py runs it.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import vm from "node:vm";

class Element {
  constructor(tag) {
    this.tag = tag;
    this.children = [];
    this.parent = null;
    this.className = "";
    this.textContent = "";
    this.attributes = {};
    this.listeners = {};
    this.classList = { add: (name) => { this.className += ` ${name}`; } };
  }
  set innerHTML(html) { this.html = html; } // recorded: text shown through it would be markup
  get innerHTML() { return this.html; }
  append(...items) { items.forEach((item) => this.appendChild(item)); }
  appendChild(item) { item.parent = this; this.children.push(item); return item; }
  remove() { if (this.parent) this.parent.children = this.parent.children.filter((c) => c !== this); this.parent = null; }
  replaceChildren() { this.children = []; }
  setAttribute(name, value) { this.attributes[name] = value; }
  addEventListener(type, listener) { this.listeners[type] = listener; }
  scrollIntoView() {}
  focus() {}
}

function page() {
  const ids = {};
  for (const id of ["chat-form", "chat-log", "chat-send", "chat-stop", "chat-reset", "chat-status"]) ids[id] = new Element(id);
  const form = ids["chat-form"];
  const prompt = new Element("textarea");
  prompt.value = "";
  form.elements = { prompt };
  form.reportValidity = () => true;
  const sockets = [];
  class FakeWebSocket {
    static OPEN = 1;
    constructor(url) { this.url = url; this.readyState = 0; this.sent = []; sockets.push(this); }
    send(data) { this.sent.push(JSON.parse(data)); }
    frame(data) { this.onmessage({ data: JSON.stringify(data) }); }
  }
  class FakeFormData {
    get(name) { return { model: "acme-held", system: "", temperature: "", max_tokens: "", stop: "" }[name]; }
  }
  const context = vm.createContext({
    document: { getElementById: (id) => ids[id] || null, createElement: (tag) => new Element(tag) },
    window: { SwitchboardMarkdown: { render: (text) => text } },
    location: { protocol: "http:", host: "testserver" },
    WebSocket: FakeWebSocket, FormData: FakeFormData, performance,
  });
  vm.runInContext(readFileSync(new URL("../../static/chat.js", import.meta.url), "utf8"), context);
  return { ids, form, prompt, sockets };
}

async function ask(view, text) {
  view.prompt.value = text;
  view.form.listeners.submit({ preventDefault() {} });
  const socket = view.sockets.at(-1);
  socket.readyState = 1;
  socket.onopen();
  await new Promise((resolve) => setImmediate(resolve));
  return socket;
}

const answer = (view) => view.ids["chat-log"].children.at(-1);
const waitingLine = (view) => answer(view).children.find((c) => c.className.includes("waiting"));

test("a held request shows that it waits for approval, by request id, until it is decided", async () => {
  const view = page();
  const socket = await ask(view, "ship it?");
  assert.equal(socket.sent[0].id, "c1");
  socket.frame({ type: "approval", id: "c1", request: { id: "<img src=x onerror=alert(1)>", status: "awaiting_approval" } });
  const line = waitingLine(view);
  assert.equal(line.textContent, "Waiting for approval (request id <img src=x onerror=alert(1)>)");
  assert.equal(line.innerHTML, undefined); // shown as text, never as markup
  assert.equal(view.ids["chat-status"].textContent, "Waiting for approval…");
  socket.frame({ type: "approval", id: "c1", request: { id: "r1", status: "approved" } });
  assert.equal(waitingLine(view), undefined);
  socket.frame({ type: "delta", id: "c1", content: "yes" });
  socket.frame({ type: "done", id: "c1", model: "acme-held" });
  assert.equal(answer(view).children.find((c) => c.className === "body").innerHTML, "yes");
  assert.equal(view.ids["chat-send"].disabled, false);
});

test("a rejected request clears the wait and shows the error", async () => {
  const view = page();
  const socket = await ask(view, "ship it?");
  socket.frame({ type: "approval", id: "c1", request: { id: "r2", status: "awaiting_approval" } });
  assert.ok(waitingLine(view));
  socket.frame({ type: "approval", id: "c1", request: { id: "r2", status: "rejected" } });
  socket.frame({ type: "error", id: "c1", status: 403, error: { message: "Request r2 was rejected by alice" } });
  assert.equal(waitingLine(view), undefined);
  assert.ok(answer(view).children.some((c) => c.textContent === "Error 403: Request r2 was rejected by alice"));
});

test("a request that is withdrawn while waiting loses its waiting line", async () => {
  const view = page();
  const socket = await ask(view, "ship it?");
  socket.frame({ type: "approval", id: "c1", request: { id: "r3", status: "awaiting_approval" } });
  assert.ok(waitingLine(view));
  socket.frame({ type: "cancelled", id: "c1" });
  assert.equal(waitingLine(view), undefined);
});
