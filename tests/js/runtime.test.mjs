// static/runtime.js against a live gateway (tests/runtime/test_js_client.py starts it, registers the blocks
// and sets SWITCHBOARD_URL and SWITCHBOARD_API_KEY): the seed's Node examples, errors and cancel.
import { test } from "node:test";
import assert from "node:assert/strict";

import { VMError, startRuntime } from "../../static/runtime.js";

const messages = [{ role: "user", content: [{ type: "text", text: "What's your name?" }] }];

test("echo answers the input as it is", async () => {
  const rt = await startRuntime();
  const result = await rt.call("echo", { text: "Hello world" });
  assert.deepEqual(result, { text: "Hello world" });
  await rt.stop();
});

test("split_text answers chunks of at most 4000 characters", async () => {
  const rt = await startRuntime();
  const text = Array.from({ length: 12 }, (_, n) => `Paragraph ${n} `.repeat(200)).join("\n\n");
  const result = await rt.call("split_text", { text });
  const chunks = result.chunks;
  assert.equal(chunks.length, 12);
  assert.ok(chunks.every((chunk) => chunk.length <= 4000));
  await rt.stop();
});

test("a language model streams its answer through callIterMethod, then is deleted", async () => {
  const rt = await startRuntime();
  await rt.define("tvm_language_model", "lm0", { model: "qwen3-0.6b" });
  let text = "";
  const reasons = [];
  for await (const resp of rt.callIterMethod("lm0", "infer", { messages })) {
    text += resp.message.content[0].text;
    reasons.push(resp.finish_reason);
  }
  assert.equal(text, "tok0 tok1 tok2 ");
  assert.deepEqual(reasons, [null, null, null, "stop"]);
  await rt.delete("lm0");
  await assert.rejects(rt.callMethod("lm0", "infer", { messages }), (error) => {
    assert.ok(error instanceof VMError);
    assert.equal(error.status, 404);
    assert.equal(error.code, "component_not_found");
    return true;
  });
  await rt.stop();
});

test("requests run side by side and leaving a loop early cancels the request", async () => {
  const rt = await startRuntime();
  await rt.define("language_model", "slow", { model: "qwen3-slow" });
  const stream = rt.callIterMethod("slow", "infer", { messages });
  const first = await stream.next();
  assert.equal(first.value.finish_reason, null);
  assert.deepEqual(await rt.call("calculator", { expression: "2^10" }), { value: 1024 });
  await stream.return();  // what a `break` out of `for await` does: the client sends a cancel
  assert.deepEqual(await rt.call("echo", { after: true }), { after: true });
  await rt.delete("slow");
  await rt.stop();
});

test("a refusal rejects with the VM's reason", async () => {
  const rt = await startRuntime();
  await assert.rejects(rt.call("split_text", { text: "x", chunk_size: 5, chunk_overlap: 6 }),
    (error) => error instanceof VMError && error.status === 400 && error.param === "chunk_overlap");
  await rt.stop();
});

test("a wrong key is refused when the runtime starts", async () => {
  await assert.rejects(startRuntime(undefined, { apiKey: "sb-wrong" }),
    (error) => error instanceof VMError && error.status === 401);
});
