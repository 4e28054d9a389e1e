// A backend's use of timq's HTTP API from Node (18 or later: fetch is built in).
// Settings: TIMQ_API_URL, TIMQ_API_TOKEN, GROUP_ID. It recalls messages
// 10 to 21 (two tasks) and waits until both have run.

const base = process.env.TIMQ_API_URL.replace(/\/$/, "");
const headers = { "Content-Type": "application/json" };
if (process.env.TIMQ_API_TOKEN) headers.Authorization = `Bearer ${process.env.TIMQ_API_TOKEN}`;

async function call(method, path, body) {
  const resp = await fetch(base + path, { method, headers, body: body && JSON.stringify(body) });
  const text = await resp.text();
  return [resp.status, text ? JSON.parse(text) : null];
}

const msgs = [];
for (let s = 10; s <= 21; s++) msgs.push({ MsgSeq: s });
const [status, res] = await call("POST", "/v1/recall", { GroupId: process.env.GROUP_ID, MsgSeqList: msgs });
if (status !== 202 || res.task_ids.length !== 2) throw new Error(`recall: ${status} ${JSON.stringify(res)}`);

const deadline = Date.now() + 60_000;
for (;;) {
  const states = await Promise.all(res.task_ids.map(async (id) => (await call("GET", `/v1/tasks/${id}`))[1].state));
  if (states.every((s) => s === "completed")) break;
  if (Date.now() > deadline) throw new Error(`tasks not completed: ${states}`);
  await new Promise((r) => setTimeout(r, 200));
}
console.log("tasks completed:", res.task_ids.length);
