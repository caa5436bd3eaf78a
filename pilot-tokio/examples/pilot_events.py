#!/usr/bin/env python3
"""Subscribe and publish from Python through `pilotctl --json` (no bindings needed).

    pilotctl daemon start
    python3 pilot-tokio/examples/pilot_events.py            # prints events on tasks.*
    pilotctl publish tasks.complete '{"task_id":"abc123","status":"done"}'

`subscribe --json` prints one JSON object per event: {"bytes": n, "data": "...", "topic": "..."}.
Errors come as one JSON object on stderr: {"code": ..., "message": ..., "status": "error"}.
"""

import json
import subprocess
import sys

PILOTCTL = "pilotctl"


def publish(topic, data):
    out = subprocess.run([PILOTCTL, "--json", "publish", topic, "--data", data],
                         capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(json.loads(out.stderr)["message"])
    return json.loads(out.stdout)["data"]


def subscribe(pattern):
    proc = subprocess.Popen([PILOTCTL, "--json", "subscribe", pattern],
                            stdout=subprocess.PIPE, text=True)
    try:
        for line in proc.stdout:
            yield json.loads(line)
    finally:
        proc.terminate()


if __name__ == "__main__":
    pattern = sys.argv[1] if len(sys.argv) > 1 else "tasks.*"
    for event in subscribe(pattern):
        print(f"[{event['topic']}] {event['data']}", flush=True)
