// Smoke program of the generated TypeScript client (openapi-typescript types + openapi-fetch),
// run by tests/test_generated_clients.py against a live server: MEMORY_URL, MEMORY_KEY, and a
// RUN id that keeps the names of this run apart. It stops at the first failed check (exit 1).
import createClient from "openapi-fetch";
import type { components, paths } from "./api";

type Failure = components["schemas"]["Failure"];

const baseUrl = process.env.MEMORY_URL!;
const run = process.env.RUN!;
const client = createClient<paths>({
  baseUrl,
  headers: { Authorization: `Bearer ${process.env.MEMORY_KEY}` },
});

function check(ok: boolean, what: string, detail?: unknown): asserts ok {
  if (!ok) {
    console.error(`FAILED: ${what}`, detail === undefined ? "" : JSON.stringify(detail));
    process.exit(1);
  }
}

function same(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

// Every answer is success | Failure, narrowed by `success` alone.
function describe(answer: { success: true; message: string } | Failure): string {
  return answer.success ? `ok: ${answer.message}` : `${answer.code}: ${answer.error}`;
}

const conv = `conv-${run}`;

// --- memory add: one message, then a batch with an Idempotency-Key, then its retry -----------
{
  const { data, error } = await client.POST("/api/memory", {
    body: { conversationId: conv, blockId: "notes", blockName: `Notes ${run}`, role: "system", content: "be brief" },
  });
  check(data !== undefined && error === undefined, "add one", error);
  check(data.success && data.replayed === false, "add one answers success", data);
  check(data.memories[0].messageCount === 1 && data.memories[0].data[0].seq === 0, "add one memory", data);
  check(data.memories[0].blockName === `Notes ${run}`, "blockName on add", data);
}
const batch = {
  conversationId: conv,
  blockId: "notes",
  messages: [
    { role: "user" as const, content: "hello" },
    { role: "assistant" as const, content: "hi" },
    { role: "user" as const, content: "how are you?" },
    { role: "assistant" as const, content: "fine" },
  ],
};
const idem = { "Idempotency-Key": `batch-${run}` };
{
  const first = await client.POST("/api/memory", { body: batch, params: { header: idem } });
  check(first.data?.success === true && first.data.replayed === false, "batch add", first.error);
  check(same(first.data.memories[0].data.map((m) => m.seq), [1, 2, 3, 4]), "batch seqs", first.data);
  const retry = await client.POST("/api/memory", { body: batch, params: { header: idem } });
  check(retry.data?.success === true && retry.data.replayed === true, "batch retry replays", retry);
  check(retry.data.memories[0].messageCount === 5, "retry appended nothing", retry.data);
}
await client.POST("/api/memory", { body: { conversationId: conv, role: "user", content: "other block" } });
await client.POST("/api/memory", {
  body: { conversationId: `${conv}-b`, blockId: "notes", role: "user", content: "other conversation" },
});

// --- get with each filter (and combined), windows -------------------------------------------
{
  const byConv = await client.GET("/api/memory", { params: { query: { conversationId: conv } } });
  check(byConv.data?.success === true, "get by conversationId", byConv.error);
  check(same(byConv.data.memories.map((m) => m.blockId).sort(), ["default", "notes"]), "both blocks", byConv.data);
  check(byConv.data.nextCursor === null, "one page", byConv.data);

  const byBlock = await client.GET("/api/memory", { params: { query: { blockId: "notes" } } });
  const convs = (byBlock.data?.memories ?? []).map((m) => m.conversationId).filter((c) => c.startsWith(conv));
  check(same(convs.sort(), [conv, `${conv}-b`]), "get by blockId", byBlock.data);

  const byName = await client.GET("/api/memory", { params: { query: { blockName: `Notes ${run}` } } });
  check(byName.data !== undefined && byName.data.memories.length === 2, "get by blockName", byName.data);
  check(byName.data.memories.every((m) => m.blockName === `Notes ${run}`), "names", byName.data);

  const both = await client.GET("/api/memory", { params: { query: { conversationId: conv, blockId: "notes" } } });
  check(both.data?.memories.length === 1, "get by conversationId + blockId", both.data);
  const memory = both.data.memories[0];
  // A message page of MEMORY_MAX_MESSAGE_PAGE (3): the newest 3 of 5, and a cursor for the rest.
  check(same(memory.data.map((m) => m.content), ["hi", "how are you?", "fine"]), "newest page", memory);
  check(memory.messageCount === 5 && memory.dataCursor !== null, "dataCursor", memory);
  check(memory.createdAt.endsWith("Z") && memory.updatedAt.length > 0, "timestamps", memory);

  // Older messages through dataCursor.
  const older = await client.GET("/api/memory/messages", {
    params: { query: { conversationId: conv, blockId: "notes", cursor: memory.dataCursor } },
  });
  check(older.data?.success === true, "messages page", older.error);
  check(same(older.data.data.map((m) => m.seq), [0, 1]), "older messages", older.data);
  check(older.data.nextCursor === null, "first message reached", older.data);

  const windowed = await client.GET("/api/memory", {
    params: { query: { conversationId: conv, blockId: "notes", lastN: 1, keepSystem: true } },
  });
  check(same(windowed.data?.memories[0].data.map((m) => m.role), ["system", "assistant"]), "lastN window", windowed.data);
}

// --- getAll, paged with limit and cursor ------------------------------------------------------
{
  const seen: string[] = [];
  let cursor: string | undefined;
  for (let pages = 0; pages < 100; pages++) {
    const page = await client.GET("/api/memory/all", { params: { query: { limit: 1, cursor } } });
    check(page.data?.success === true && page.data.memories.length <= 1, "getAll page", page.error);
    seen.push(...page.data.memories.map((m) => m.key));
    if (page.data.nextCursor === null) break;
    cursor = page.data.nextCursor;
  }
  const ours = [`${conv}:default`, `${conv}:notes`, `${conv}-b:notes`];
  check(ours.every((k) => seen.includes(k)), "getAll pages hold every memory", seen);
  check(new Set(seen).size === seen.length, "no memory twice", seen);
}

// --- delete: dryRun counts, then for real ----------------------------------------------------
{
  const dry = await client.DELETE("/api/memory", { params: { query: { conversationId: conv, dryRun: true } } });
  check(dry.data?.success === true && dry.data.dryRun && dry.data.deletedCount === 2, "dry run", dry.data);
  const still = await client.GET("/api/memory", { params: { query: { conversationId: conv } } });
  check(still.data?.memories.length === 2, "dry run deleted nothing", still.data);
  const real = await client.DELETE("/api/memory", { params: { query: { conversationId: conv } } });
  check(real.data?.success === true && !real.data.dryRun && real.data.deletedCount === 2, "delete", real.data);
  const gone = await client.GET("/api/memory", { params: { query: { conversationId: conv } } });
  check(gone.data?.memories.length === 0 && gone.data.message === "No memories found", "deleted", gone.data);
}

// --- KV: set with a content type, exact bytes back, exists, conditional set, list, delete ------
const raw = { bodySerializer: (body: string) => body }; // send the string as is, not as JSON
const key = `ts/${run}/greeting`;
{
  const set = await client.PUT("/api/kv/{key}", {
    params: { path: { key } },
    body: "hello, wörld",
    headers: { "Content-Type": "text/plain; charset=utf-8" },
    ...raw,
  });
  check(set.data?.success === true && set.data.created && set.response.status === 201, "kv set", set.error);
  check(set.response.headers.get("ETag") === set.data.etag, "ETag header", set.data);
  // An entry's size counts its key and its value: 13 bytes of value, not a 15-byte JSON string.
  check(set.data.size === new TextEncoder().encode(key).length + 13, "stored 13 bytes", set.data);

  const got = await client.GET("/api/kv/{key}", { params: { path: { key } }, parseAs: "arrayBuffer" });
  check(got.response.status === 200 && got.data !== undefined, "kv get", got.error);
  const bytes = new Uint8Array(got.data as ArrayBuffer);
  check(same(Array.from(bytes), Array.from(new TextEncoder().encode("hello, wörld"))), "exact bytes", Array.from(bytes));
  check(got.response.headers.get("Content-Type") === "text/plain; charset=utf-8", "content type", got.response.headers.get("Content-Type"));

  const present = await client.HEAD("/api/kv/{key}", { params: { path: { key } } });
  check(present.response.status === 200, "exists: present", present.response.status);
  check(present.response.headers.get("X-Value-Length") === "13", "X-Value-Length", present.response.headers.get("X-Value-Length"));
  const absent = await client.HEAD("/api/kv/{key}", { params: { path: { key: `${key}-absent` } } });
  check(absent.response.status === 404, "exists: absent", absent.response.status);

  // Conditional set: on the current version it succeeds; with a stale one, or on absence
  // (If-None-Match: *) of a present key, it is a 412 that changes nothing.
  const etag = set.data.etag;
  const next = await client.PUT("/api/kv/{key}", {
    params: { path: { key }, header: { "If-Match": etag }, query: { contentType: "text/plain" } },
    body: "v2",
    ...raw,
  });
  check(next.data?.success === true && next.data.version === set.data.version + 1, "If-Match set", next.error);
  const stale = await client.PUT("/api/kv/{key}", {
    params: { path: { key }, header: { "If-Match": etag } },
    body: "v3",
    ...raw,
  });
  check(stale.error !== undefined && stale.response.status === 412, "stale If-Match", stale.response.status);
  check(!stale.error.success && stale.error.code === "precondition_failed", "412 envelope", stale.error);
  const create = await client.PUT("/api/kv/{key}", {
    params: { path: { key }, header: { "If-None-Match": "*" } },
    body: "v4",
    ...raw,
  });
  check(create.response.status === 412, "If-None-Match: * on a present key", create.response.status);
  const after = await client.GET("/api/kv/{key}", { params: { path: { key } }, parseAs: "text" });
  check(after.data === "v2", "412s changed nothing", after.data);

  for (const name of ["a", "b", "c"]) {
    await client.PUT("/api/kv/{key}", { params: { path: { key: `ts/${run}/list/${name}` } }, body: name, ...raw });
  }
  const listed: string[] = [];
  let cursor: string | undefined;
  for (let pages = 0; pages < 10; pages++) {
    const page = await client.GET("/api/kv", { params: { query: { prefix: `ts/${run}/list/`, limit: 2, cursor } } });
    check(page.data?.success === true && page.data.items.length <= 2, "kv list page", page.error);
    listed.push(...page.data.items.map((i) => i.key));
    if (page.data.nextCursor === null) break;
    cursor = page.data.nextCursor;
  }
  check(same(listed, ["a", "b", "c"].map((n) => `ts/${run}/list/${n}`)), "kv list by prefix and cursor", listed);

  const del = await client.DELETE("/api/kv/{key}", { params: { path: { key } } });
  check(del.data?.success === true && del.data.deleted, "kv delete", del.error);
  const again = await client.HEAD("/api/kv/{key}", { params: { path: { key } } });
  check(again.response.status === 404, "deleted key is absent", again.response.status);
}

// --- an error, narrowed by `success` -----------------------------------------------------------
type MemoryList = components["schemas"]["MemoryList"];
type GetQuery = NonNullable<paths["/api/memory"]["get"]["parameters"]["query"]>;

async function getMemories(query: GetQuery): Promise<MemoryList | Failure> {
  const { data, error } = await client.GET("/api/memory", { params: { query } });
  return data ?? error!;
}
{
  const answer = await getMemories({}); // no filter: a 400
  if (answer.success) {
    check(false, "a request without a filter fails", answer);
  } else {
    check(answer.code === "missing_filter", "Failure.code", answer);
    check(answer.error.length > 0 && answer.message.length > 0, "Failure.error and .message", answer);
  }
  console.log(describe(answer));
  const found = await getMemories({ conversationId: `${conv}-b` });
  check(found.success && found.memories.length === 1 && found.message === "Found 1 memory", "success narrows", found);
}

console.log("typescript smoke: ok");
