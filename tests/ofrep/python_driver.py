#!/usr/bin/env python3
"""Line-protocol driver for the official OpenFeature OFREP provider (Python).

Needs: openfeature-sdk==0.10.0, openfeature-provider-ofrep==0.3.0 (see requirements.txt).

Reads one JSON command per line on stdin, writes one JSON answer per line on stdout:
  {"op":"init","base_url":URL,"headers":{...},"timeout":5.0}   -> {"ok":true}
  {"op":"bool","flag":KEY,"default":false,"targeting_key":U|null,"attributes":{...}}
      -> {"ok":true,"value":..,"reason":..,"variant":..,"error_code":..,"error_message":..,
          "flag_metadata":{...}}
  ("string", "int", "float", "object" work the same way with the matching getter.)
  {"op":"close"}                                                -> {"ok":true}, then exit
Any exception -> {"ok":false,"error":"..."}. Logging goes to stderr only.
"""
import enum
import json
import sys

from openfeature import api
from openfeature.contrib.provider.ofrep import OFREPProvider
from openfeature.evaluation_context import EvaluationContext

_client = None


def _name(v):
    """Enum -> its exact name/value string (e.g. "SPLIT", "FLAG_NOT_FOUND")."""
    if v is None:
        return None
    if isinstance(v, enum.Enum):
        return str(v.value)
    return str(v)


def _init(cmd):
    global _client
    headers = dict(cmd.get("headers") or {})
    kwargs = {"headers_factory": (lambda: dict(headers)) if headers else None}
    if cmd.get("timeout") is not None:
        kwargs["timeout"] = float(cmd["timeout"])
    provider = OFREPProvider(cmd["base_url"], **kwargs)
    api.set_provider_and_wait(provider)
    _client = api.get_client()
    return {"ok": True}


_GETTERS = {
    "bool": "get_boolean_details",
    "string": "get_string_details",
    "int": "get_integer_details",
    "float": "get_float_details",
    "object": "get_object_details",
}


def _evaluate(op, cmd):
    if _client is None:
        raise RuntimeError("init first")
    ctx = EvaluationContext(
        targeting_key=cmd.get("targeting_key"),
        attributes=dict(cmd.get("attributes") or {}),
    )
    details = getattr(_client, _GETTERS[op])(cmd["flag"], cmd.get("default", False), ctx)
    return {
        "ok": True,
        "value": details.value,
        "reason": _name(details.reason),
        "variant": details.variant,
        "error_code": _name(details.error_code),
        "error_message": details.error_message,
        "flag_metadata": dict(details.flag_metadata or {}),
    }


def _answer(obj):
    sys.stdout.write(json.dumps(obj, default=str) + "\n")
    sys.stdout.flush()


def main():
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        op = None
        try:
            cmd = json.loads(line)
            op = cmd.get("op")
            if op == "init":
                out = _init(cmd)
            elif op in _GETTERS:
                out = _evaluate(op, cmd)
            elif op == "close":
                api.shutdown()
                out = {"ok": True}
            else:
                raise ValueError(f"unknown op {op!r}")
        except Exception as e:  # noqa: BLE001 - every failure becomes an answer
            out = {"ok": False, "error": f"{type(e).__name__}: {e}"}
        _answer(out)
        if op == "close":
            return


if __name__ == "__main__":
    main()
