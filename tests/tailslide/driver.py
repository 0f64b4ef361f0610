"""Drives the real Tailslide Python SDK (tailslide-sdk 0.1.7 from PyPI), unchanged, for Tower's
end-to-end tests (tests/tests/tailslide.rs).

One JSON command per line on stdin, one JSON answer per line on stdout. The SDK prints debug
lines of its own, so everything it prints goes to stderr and only answers go to stdout.

Commands:
  {"op": "init", "nats": URL, "stream": S, "app_id": ID, "sdk_key": K, "redis_host": H,
   "redis_port": P, "user": U}    FlagManager(...).initialize_flags(); answers once its live
                                    subscription is in place, with the flags it read
  {"op": "flags"}                   the flags the SDK holds
  {"op": "active", "flag": T, "user": U}
                                    Toggler(flag T, user U).is_flag_active()
  {"op": "emit", "flag": T, "status": "success"|"failure", "count": N}
                                    N calls of emit_success() / emit_failure()
  {"op": "wait", "flag": T, "field": F, "value": V, "timeout": SECONDS}
                                    waits until the SDK's copy of flag T has F == V
  {"op": "close"}                   disconnects and exits
"""

import asyncio
import json
import os
import sys
import time

from tailslide import FlagManager

answers = os.fdopen(os.dup(sys.stdout.fileno()), "w", buffering=1)
sys.stdout = sys.stderr


def answer(**fields):
    answers.write(json.dumps(fields) + "\n")


def flag_named(manager, title):
    for flag in manager.get_flags():
        if flag["title"] == title:
            return flag
    return None


async def run():
    loop = asyncio.get_running_loop()
    manager = None
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line:
            return
        cmd = json.loads(line)
        op = cmd["op"]
        try:
            if op == "init":
                manager = FlagManager(
                    nats_server=cmd["nats"],
                    nats_stream=cmd["stream"],
                    app_id=str(cmd["app_id"]),
                    sdk_key=cmd["sdk_key"],
                    user_context=cmd["user"],
                    redis_host=cmd["redis_host"],
                    redis_port=cmd["redis_port"],
                )
                started = time.monotonic()
                await asyncio.wait_for(manager.initialize_flags(), timeout=20)
                # The SDK subscribes to new messages right after it read the latest one; a change
                # before that subscription exists would be missed by the SDK itself.
                while manager._nats_client.subscribed_stream is None:
                    if time.monotonic() - started > 20:
                        raise TimeoutError("the SDK's live subscription never started")
                    await asyncio.sleep(0.005)
                answer(ok=True, flags=manager.get_flags())
            elif op == "flags":
                answer(ok=True, flags=manager.get_flags())
            elif op == "active":
                manager.set_user_context(cmd["user"])
                toggler = manager.new_toggler({"flag_name": cmd["flag"]})
                answer(ok=True, active=bool(toggler.is_flag_active()))
            elif op == "emit":
                toggler = manager.new_toggler({"flag_name": cmd["flag"]})
                emit = toggler.emit_success if cmd["status"] == "success" else toggler.emit_failure
                for _ in range(cmd["count"]):
                    emit()
                answer(ok=True)
            elif op == "wait":
                started = time.monotonic()
                while True:
                    flag = flag_named(manager, cmd["flag"])
                    if flag is not None and flag.get(cmd["field"]) == cmd["value"]:
                        answer(ok=True, ms=(time.monotonic() - started) * 1000, flag=flag)
                        break
                    if time.monotonic() - started > cmd["timeout"]:
                        answer(ok=False, error="timeout", flags=manager.get_flags())
                        break
                    await asyncio.sleep(0.001)
            elif op == "close":
                await manager.disconnet()
                answer(ok=True)
                return
            else:
                answer(ok=False, error=f"unknown op {op!r}")
        except Exception as e:  # the test shows what the SDK raised
            answer(ok=False, error=f"{type(e).__name__}: {e}")


asyncio.run(run())
