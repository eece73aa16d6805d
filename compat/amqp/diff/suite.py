"""Differential AMQP 0-9-1 suite: the same scripted behaviours against RabbitMQ and Tributary.

Usage: suite.py --rabbitmq PORT --tributary PORT [--findings FILE] [name-filter...]
       suite.py --only PORT [name-filter...]        (one broker, prints its observations)

Each behaviour is a function registered with @behaviour(area, name) that drives a broker through
real clients (pika, or raw frames from raw.py) and returns what a user could observe: reply
codes and texts, counts, headers, order, flags. The observation is normalised (run prefix,
generated names, timestamps) and compared; the table shows behaviour x {rabbitmq, tributary,
same?}. Exit status 1 when a difference is not listed in FINDINGS.md (a row `| \\`name\\` | ...`).

Invariants: every behaviour uses names under its own run prefix and cleans up after itself, so
the two brokers see the same fresh state; a behaviour that hangs is cut by SIGALRM and observed
as `timeout`, it never stalls the suite.
"""

import argparse
import json
import re
import signal
import sys
import time
import uuid

from common import BEHAVIOURS, Ctx, normalise

SCENARIO_SECONDS = 12


def run_all(port, selected, label):
    observed = {}
    for area, name, function in selected:
        prefix = f"d{uuid.uuid4().hex[:8]}-"
        ctx = Ctx(port, prefix)
        signal.alarm(SCENARIO_SECONDS)
        try:
            value = function(ctx)
        except TimeoutError:
            value = "timeout"
        except Exception as error:  # noqa: BLE001 - an unexpected client error is an observation
            value = f"error {type(error).__name__}: {error}"
        finally:
            signal.alarm(0)
            ctx.close_all()
        if not isinstance(value, str):
            value = json.dumps(value, sort_keys=False, default=str)
        observed[name] = normalise(value, prefix)
        print(f"  [{label}] {area}/{name}: {observed[name][:150]}", file=sys.stderr, flush=True)
    return observed


def listed_findings(path):
    if not path:
        return set()
    with open(path, encoding="utf-8") as handle:
        return set(re.findall(r"^\|\s*`([^`]+)`\s*\|", handle.read(), re.MULTILINE))


def on_alarm(_signum, _frame):
    raise TimeoutError


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rabbitmq", type=int)
    parser.add_argument("--tributary", type=int)
    parser.add_argument("--only", type=int)
    parser.add_argument("--findings")
    parser.add_argument("filters", nargs="*")
    args = parser.parse_args()
    signal.signal(signal.SIGALRM, on_alarm)
    import behaviours  # noqa: F401 - registers the behaviours

    selected = [b for b in BEHAVIOURS if not args.filters or any(f in b[1] for f in args.filters)]
    names = [b[1] for b in BEHAVIOURS]
    duplicated = {n for n in names if names.count(n) > 1}
    if duplicated:
        sys.exit(f"duplicate behaviour names: {sorted(duplicated)}")
    if args.only:
        for name, value in run_all(args.only, selected, "only").items():
            print(f"{name}: {value}")
        return 0
    started = time.monotonic()
    rabbit = run_all(args.rabbitmq, selected, "rabbitmq")
    ours = run_all(args.tributary, selected, "tributary")
    listed = listed_findings(args.findings)
    width = max(len(n) for _, n, _ in selected)
    print(f"\n{'behaviour':<{width}}  same?  rabbitmq | tributary")
    unexplained, explained, fixed_listed = [], [], []
    for area, name, _ in selected:
        same = rabbit[name] == ours[name]
        verdict = "yes" if same else ("LISTED" if name in listed else "NO")
        if same and name in listed:
            fixed_listed.append(name)
        elif not same:
            (explained if name in listed else unexplained).append(name)
        print(f"{name:<{width}}  {verdict:<5}  {rabbit[name][:70]} | {ours[name][:70]}")
    for name in explained + unexplained:
        print(f"\n--- {name} ({'listed in FINDINGS.md' if name in explained else 'UNEXPLAINED'})")
        print(f"  rabbitmq : {rabbit[name]}\n  tributary: {ours[name]}")
    same_count = len(selected) - len(explained) - len(unexplained)
    print(f"\namqp diff: {len(selected)} behaviours, {same_count} same, {len(explained)} listed "
          f"differences, {len(unexplained)} unexplained, {time.monotonic() - started:.0f} s")
    if fixed_listed:
        print(f"listed in FINDINGS.md but now the same (remove the row): {', '.join(fixed_listed)}")
    return 1 if unexplained else 0


if __name__ == "__main__":
    sys.exit(main())
