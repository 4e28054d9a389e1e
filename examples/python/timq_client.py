"""A backend's use of timq's HTTP API, with Python's standard library only.

Settings: TIMQ_API_URL (e.g. http://127.0.0.1:8090), TIMQ_API_TOKEN, GROUP_ID.
It recalls messages 10 to 21 (two tasks), modifies message 25, waits until
the tasks have run, then runs a job of three clears and waits until it ends.
"""

import json
import os
import sys
import time
import urllib.error
import urllib.request

BASE = os.environ["TIMQ_API_URL"].rstrip("/")
TOKEN = os.environ.get("TIMQ_API_TOKEN", "")
GROUP = os.environ["GROUP_ID"]


def call(method, path, body=None, content_type="application/json", headers=None):
    """Sends one request; returns (status, decoded JSON answer or None)."""
    data = body.encode() if isinstance(body, str) else (json.dumps(body).encode() if body is not None else None)
    req = urllib.request.Request(BASE + path, data=data, method=method)
    if TOKEN:
        req.add_header("Authorization", "Bearer " + TOKEN)
    if data is not None:
        req.add_header("Content-Type", content_type)
    for k, v in (headers or {}).items():
        req.add_header(k, v)
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            raw = resp.read()
            return resp.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as e:
        problem = json.loads(e.read() or b"null")  # application/problem+json
        return e.code, problem


def wait(what, check, within=60):
    deadline = time.time() + within
    while time.time() < deadline:
        if check():
            return
        time.sleep(0.2)
    sys.exit(f"timed out waiting for {what}")


# Recall 12 messages: timq makes two tasks of them. The Idempotency-Key
# makes a retry of this request safe.
status, res = call("POST", "/v1/recall", {"GroupId": GROUP, "Reason": "spam",
                                          "MsgSeqList": [{"MsgSeq": s} for s in range(10, 22)]},
                   headers={"Idempotency-Key": "example-recall-1"})
assert status == 202 and len(res["task_ids"]) == 2, (status, res)
ids = res["task_ids"]

status, res = call("POST", "/v1/modify", {"GroupId": GROUP, "MsgSeq": 25, "MsgBody": [
    {"MsgType": "TIMTextElem", "MsgContent": {"Text": "[removed by a moderator]"}}]})
assert status == 202, (status, res)
ids += res["task_ids"]

# A bad request names the field.
status, problem = call("POST", "/v1/clear", {"GroupId": GROUP, "MsgSeq": 0})
assert status == 400 and problem["errors"][0]["location"] == "body.MsgSeq", (status, problem)

wait("the tasks", lambda: all(call("GET", "/v1/tasks/" + i)[1]["state"] == "completed" for i in ids))
print("tasks completed:", len(ids))

# A job: one operation per line.
lines = "".join(json.dumps({"op": "clear", "GroupId": GROUP, "MsgSeq": s}) + "\n" for s in (1, 2, 3))
status, res = call("POST", "/v1/jobs?name=python-example", lines, content_type="application/x-ndjson")
assert status == 201, (status, res)
job = res["job"]["id"]
wait("the job", lambda: call("GET", "/v1/jobs/" + job)[1]["finished"])
_, j = call("GET", "/v1/jobs/" + job)
assert j["state"] == "done" and j["counts"]["applied"] == 3, j
print("job done:", job)
