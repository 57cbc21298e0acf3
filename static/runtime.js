// Switchboard's low-level Runtime client (docs/runtime.md): the seed's Node API, one ES module for the
// browser (the dashboard's session authenticates the socket) and Node 20 (`node --experimental-websocket`,
// the key from SWITCHBOARD_API_KEY or `startRuntime(url, { apiKey })`).
//
//   import { startRuntime } from "/static/runtime.js";
//   const rt = await startRuntime();
//   await rt.call("echo", { text: "Hello world" });              // undefined, one value, or an array
//   await rt.define("language_model", "lm0", { model: "smollm2-135m-instruct" });
//   for await (const resp of rt.callIterMethod("lm0", "infer", { messages })) { ... }
//   await rt.delete("lm0");
//   await rt.stop();

const inNode = typeof process !== "undefined" && Boolean(process.versions && process.versions.node);

function defaultUrl() {
  if (typeof location !== "undefined" && location.host) return `${location.protocol}//${location.host}`;
  if (inNode && process.env.SWITCHBOARD_URL) return process.env.SWITCHBOARD_URL;
  return "http://127.0.0.1:8000";
}

function defaultKey() {
  return inNode ? process.env.SWITCHBOARD_API_KEY : undefined;
}

// A refused or failed request: the VM's reason, the HTTP status it stands for and a stable code.
export class VMError extends Error {
  constructor(body) {
    super((body && body.message) || "the runtime request failed");
    this.name = "VMError";
    this.status = body ? body.http_status : undefined;
    this.code = body ? body.code : undefined;
    this.param = body ? body.param : undefined;
  }
}

// The packets of one request, as they arrive: a queue that an async generator reads.
class Stream {
  constructor() {
    this.items = [];
    this.waiting = null;
    this.finished = false;
  }
  push(item) {
    if (this.waiting) {
      const resolve = this.waiting;
      this.waiting = null;
      resolve(item);
    } else {
      this.items.push(item);
    }
  }
  next() {
    if (this.items.length) return Promise.resolve(this.items.shift());
    return new Promise((resolve) => { this.waiting = resolve; });
  }
}

function collapse(bodies) {
  if (bodies.length === 0) return undefined;
  return bodies.length === 1 ? bodies[0] : bodies;
}

async function collect(iterable) {
  const out = [];
  for await (const body of iterable) out.push(body);
  return out;
}

export class Runtime {
  constructor(socket) {
    this.socket = socket;
    this.nextId = 1;
    this.streams = new Map();
    this.closed = null;
    socket.onmessage = (event) => this.#receive(JSON.parse(event.data));
    socket.onclose = (event) => {
      this.closed = `the runtime socket closed (${event.code}${event.reason ? ` ${event.reason}` : ""})`;
      for (const stream of this.streams.values()) stream.push({ status: "closed", finish: true });
      this.streams.clear();
    };
  }

  #receive(packet) {
    if (packet.id === null || packet.id === undefined) {
      // A refusal of the socket itself (a wrong key, an ended session): every request hears it.
      if (packet.status === "error") for (const stream of this.streams.values()) stream.push(packet);
      return;
    }
    const stream = this.streams.get(packet.id);
    if (stream) stream.push(packet);
  }

  async *#request(frame) {
    if (this.closed) throw new VMError({ message: this.closed });
    const id = this.nextId++;
    const stream = new Stream();
    this.streams.set(id, stream);
    this.socket.send(JSON.stringify({ ...frame, id }));
    try {
      while (true) {
        const packet = await stream.next();
        if (packet.finish) stream.finished = true;
        if (packet.status === "error") throw new VMError(packet.body);
        if (packet.status === "closed") throw new VMError({ message: this.closed });
        if (packet.status === "cancelled") throw new VMError({ message: "the request was cancelled", code: "cancelled" });
        if ("body" in packet) yield packet.body;
        if (packet.finish) return;
      }
    } finally {
      this.streams.delete(id);
      // The caller stopped reading early (a `break`): cancel it on the server, down to the engine.
      if (!stream.finished && !this.closed) this.socket.send(JSON.stringify({ type: "cancel", id }));
    }
  }

  callIter(funcName, input = {}) {
    return this.#request({ type: "call_function", function: funcName, input });
  }

  async call(funcName, input = {}) {
    return collapse(await collect(this.callIter(funcName, input)));
  }

  async define(componentType, componentName, attrs = {}) {
    await collect(this.#request({ type: "define_component", component_type: componentType,
                                  component_name: componentName, attrs }));
  }

  async delete(componentName) {
    await collect(this.#request({ type: "delete_component", component_name: componentName }));
  }

  callIterMethod(componentName, method, input = {}) {
    return this.#request({ type: "call_method", component_name: componentName, method, input });
  }

  async callMethod(componentName, method, input = {}) {
    return collapse(await collect(this.callIterMethod(componentName, method, input)));
  }

  async stop() {
    if (this.socket.readyState === 3) return;
    const closed = new Promise((resolve) => this.socket.addEventListener("close", resolve, { once: true }));
    this.socket.close();
    await closed;
  }
}

// Opens the socket (and authenticates it with `apiKey` when there is one); resolves to a Runtime.
export async function startRuntime(url = defaultUrl(), { apiKey = defaultKey() } = {}) {
  if (typeof WebSocket === "undefined") {
    throw new Error("no WebSocket here: run Node 20 with --experimental-websocket (Node 22+ has it built in)");
  }
  const base = new URL(url);
  const socketUrl = `${base.protocol === "https:" ? "wss" : "ws"}://${base.host}${base.pathname.replace(/\/$/, "")}/ws/runtime/`;
  // Node's WebSocket takes headers (the server checks the Origin like a browser's); a browser sends its own.
  const socket = inNode ? new WebSocket(socketUrl, { headers: { Origin: base.origin } }) : new WebSocket(socketUrl);
  await new Promise((resolve, reject) => {
    socket.onopen = resolve;
    socket.onerror = () => reject(new VMError({ message: `cannot open ${socketUrl}` }));
  });
  if (apiKey) {
    const answer = await new Promise((resolve) => {
      socket.onmessage = (event) => resolve(JSON.parse(event.data));
      socket.onclose = () => resolve({ body: { message: `${socketUrl} closed the connection` } });
      socket.send(JSON.stringify({ type: "auth", api_key: apiKey }));
    });
    if (answer.type !== "authenticated") {
      socket.close();
      throw new VMError(answer.body);
    }
  }
  return new Runtime(socket);
}
