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


class BrokerMemory:
    """The broker's peak resident memory from the moment it is made (Linux /proc: writing 5 to
    clear_refs resets VmHWM). `BROKER_PID` is set by ../lib/broker.sh; against a broker this
    suite did not start (the RabbitMQ diff) there is nothing to measure and `growth` is None."""

    def __init__(self):
        self.pid = os.environ.get("BROKER_PID")
        if self.pid:
            with open(f"/proc/{self.pid}/clear_refs", "w") as refs:
                refs.write("5")
            self.before = self._kib("VmRSS")

    def _kib(self, field):
        with open(f"/proc/{self.pid}/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
        raise AssertionError(f"no {field} in /proc/{self.pid}/status")

    def growth(self):
        """Bytes the peak rose above the resident size at the start, or None."""
        return (self._kib("VmHWM") - self.before) * 1024 if self.pid else None


def finish():
    sys.exit(1 if failed else 0)
