// A non-Python host: drives `connector serve` with Node's built-in fetch, crypto and
// test runner only (no npm packages). Started by tests/test_service_node.py, which
// passes SERVICE_URL, SERVICE_TOKEN and SINK_URL (the local Segment sink).
import { test } from "node:test";
import assert from "node:assert/strict";
import { createHmac } from "node:crypto";

const SERVICE = process.env.SERVICE_URL;
const TOKEN = process.env.SERVICE_TOKEN;
const SINK = process.env.SINK_URL;
const WRITE_KEY = "wk_NodeHost_0123456789";
const SHARED_SECRET = "node-shared-secret-42";

async function api(method, path, body) {
  const response = await fetch(SERVICE + path, {
    method,
    headers: {
      Authorization: `Bearer ${TOKEN}`,
      ...(body === undefined ? {} : { "Content-Type": "application/json" }),
    },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  assert.ok(!text.includes(WRITE_KEY), `the write key leaked into ${method} ${path}`);
  assert.ok(!text.includes(SHARED_SECRET), `the shared secret leaked into ${method} ${path}`);
  return { status: response.status, body: text ? JSON.parse(text) : null };
}

let connectionId;

test("the OpenAPI document is served", async () => {
  const response = await fetch(SERVICE + "/openapi.json");
  assert.equal(response.status, 200);
  const document = await response.json();
  assert.ok(document.paths["/v1/modules/{module_id}/run"]);
  assert.ok(document.paths["/hooks/{hook_id}"]);
});

test("a request without the token is refused by the service itself", async () => {
  const response = await fetch(SERVICE + "/v1/modules");
  assert.equal(response.status, 401);
  const { error } = await response.json();
  assert.equal(error.type, "InvalidAccessTokenError");
  assert.equal(error.origin, "service");
});

test("create a connection: secrets go in and never come out", async () => {
  const created = await api("POST", "/v1/connections", {
    app: "segment",
    values: { writeKey: WRITE_KEY, host: SINK, sharedSecret: SHARED_SECRET },
  });
  assert.equal(created.status, 201);
  assert.deepEqual(created.body.fields, { host: SINK });
  assert.deepEqual(created.body.secrets, ["sharedSecret", "writeKey"]);
  connectionId = created.body.id;
});

test("run segment.track against the local sink", async () => {
  const run = await api("POST", "/v1/modules/segment.track/run", {
    connection: connectionId,
    parameters: { event: "Order Completed", userId: "{{ order.customer }}", revenue: "19.99" },
    context: { order: { customer: "node-user-1" } },
  });
  assert.equal(run.status, 200, JSON.stringify(run.body));
  const [bundle] = run.body.bundles;
  assert.equal(bundle.userId, "node-user-1");
  assert.equal(bundle.properties.revenue, 19.99);
  const messages = await (await fetch(SINK + "/_sink/messages")).json();
  const sent = messages.find((m) => m.messageId === bundle.messageId);
  assert.ok(sent, "the sink received the message");
  assert.equal(sent.event, "Order Completed");
});

test("a bad run names the field, and nothing is sent", async () => {
  const before = await (await fetch(SINK + "/_sink/messages")).json();
  const run = await api("POST", "/v1/modules/segment.track/run", {
    connection: connectionId,
    parameters: { event: "No User" },
  });
  assert.equal(run.status, 422);
  assert.equal(run.body.error.type, "DataError");
  assert.equal(run.body.error.field, "userId");
  const after = await (await fetch(SINK + "/_sink/messages")).json();
  assert.equal(after.length, before.length);
});

test("a streamed batch: one NDJSON line out per line in", async () => {
  const lines = [
    { event: "A", userId: "node-a" },
    { event: "B" },
    { event: "C", userId: "node-c" },
  ].map((p) => JSON.stringify(p));
  const response = await fetch(
    `${SERVICE}/v1/modules/segment.track/batch?connection=${connectionId}`,
    {
      method: "POST",
      headers: { Authorization: `Bearer ${TOKEN}`, "Content-Type": "application/x-ndjson" },
      body: lines.join("\n") + "\n",
    },
  );
  assert.equal(response.status, 200);
  const out = (await response.text()).trim().split("\n").map((l) => JSON.parse(l));
  assert.equal(out.length, 3);
  assert.equal(out[0].bundles[0].userId, "node-a");
  assert.equal(out[1].error.field, "userId");
  assert.equal(out[2].bundles[0].userId, "node-c");
});

test("a hook: signed deliveries become bundles, read by long poll and acked", async () => {
  const hook = await api("POST", "/v1/hooks", {
    module: "segment.watch_events",
    connection: connectionId,
    parameters: { types: ["track"] },
  });
  assert.equal(hook.status, 201, JSON.stringify(hook.body));
  const url = hook.body.url;
  assert.ok(url.endsWith(`/hooks/${hook.body.id}`));

  // Start a long poll first: it must wake when the delivery lands.
  const reading = api("GET", `/v1/hooks/${hook.body.id}/bundles?wait=20`);

  const delivery = JSON.stringify({
    batch: [
      { type: "track", event: "Order Completed", userId: "hooked-1", messageId: "node-m-1" },
      { type: "identify", userId: "hooked-2", messageId: "node-m-2" },
    ],
  });
  const signature = createHmac("sha1", SHARED_SECRET).update(delivery).digest("hex");

  const forged = await fetch(url, {
    method: "POST",
    headers: { "Content-Type": "application/json", "X-Signature": "0".repeat(40) },
    body: delivery,
  });
  assert.equal(forged.status, 401);

  const posted = await fetch(url, {
    method: "POST",
    headers: { "Content-Type": "application/json", "X-Signature": signature },
    body: delivery,
  });
  assert.equal(posted.status, 200);
  assert.equal((await posted.json()).bundles, 1);

  const read = await reading;
  assert.equal(read.status, 200);
  assert.deepEqual(
    read.body.bundles.map((b) => b.bundle.messageId),
    ["node-m-1"],
  );
  const acked = await api("POST", `/v1/hooks/${hook.body.id}/ack`, {
    ids: read.body.bundles.map((b) => b.id),
  });
  assert.deepEqual(acked.body, { acked: 1 });
  const empty = await api("GET", `/v1/hooks/${hook.body.id}/bundles`);
  assert.deepEqual(empty.body.bundles, []);
});
