"""Shared helpers of the Python compat drivers: the broker URL and the RESULT line protocol.

Invariant: every scenario prints exactly one `RESULT <name> PASS|FAIL <detail>` line, and the
driver's exit status is non-zero when any scenario failed (see ../lib/drivers.sh).
"""

import os
import sys
import time
import traceback
import uuid

PORT = int(os.environ["AMQP_PORT"])
URL = os.environ.get("AMQP_URL", f"amqp://guest:guest@127.0.0.1:{PORT}/")

failed = False


def unique(prefix):
    """A queue or exchange name no other run or scenario uses."""
    return f"{prefix}.{uuid.uuid4().hex[:8]}"


def report(name, ok, detail=""):
    global failed
    failed = failed or not ok
    print(f"RESULT {name} {'PASS' if ok else 'FAIL'} {detail}".rstrip(), flush=True)


def check(condition, what):
    """Raises with `what` when `condition` does not hold (scenarios catch it and report)."""
    if not condition:
        raise AssertionError(what)


def scenario(name, function):
    """Runs one synchronous scenario; its return value is the PASS detail."""
    started = time.monotonic()
    try:
        detail = function() or ""
        report(name, True, f"{detail} ({time.monotonic() - started:.2f} s)".strip())
    except Exception as err:  # noqa: BLE001 - every failure becomes a FAIL line
        traceback.print_exc()
        report(name, False, f"{type(err).__name__}: {err}")


def finish():
    sys.exit(1 if failed else 0)
