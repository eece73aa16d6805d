"""A real Celery worker (solo pool) against the broker: a task round trip through the rpc://
backend, a group of tasks, an exception travelling back, and a remote-control ping (pidbox
fanout exchange and reply queue). The worker is always terminated, then killed if it lingers."""

import os
import subprocess
import sys
import time

from compat import check, finish, scenario, unique

os.environ["CELERY_COMPAT_QUEUE"] = unique("celery.compat")

from celery import group  # noqa: E402 - the app reads the queue name at import

from celery_tasks import add, app, fail  # noqa: E402

worker = subprocess.Popen(
    [sys.executable, "-m", "celery", "-A", "celery_tasks", "worker", "--pool=solo",
     "--concurrency=1", "--loglevel=INFO", "--hostname", f"compat@{os.getpid()}"],
    cwd=os.path.dirname(os.path.abspath(__file__)),
)


def task_roundtrip():
    result = add.delay(2, 3)
    value = result.get(timeout=30)
    check(value == 5, f"add(2, 3) returned {value!r}")
    check(result.successful(), f"state {result.state}")
    return f"add(2, 3) = 5, state {result.state}"


def task_group():
    values = group(add.s(i, i) for i in range(10))().get(timeout=20)
    check(values == [2 * i for i in range(10)], f"group returned {values}")
    return "10 tasks, results in order"


def task_exception():
    result = fail.delay()
    try:
        result.get(timeout=20)
        raise AssertionError("a failing task reported success")
    except ValueError as err:
        check("expected failure" in str(err), f"error {err}")
    check(result.state == "FAILURE", f"state {result.state}")
    return "ValueError came back, state FAILURE"


def eta_tasks_do_not_block():
    # The worker holds ETA tasks unacked and raises its prefetch by one per held task
    # (basic.qos while consuming); if the broker ignored that, the prefetch window (4 here)
    # would fill with waiting tasks and starve the task sent after them.
    held = [add.apply_async((i, 0), countdown=4) for i in range(6)]
    started = time.monotonic()
    value = add.delay(1, 1).get(timeout=20)
    waited = time.monotonic() - started
    check(value == 2, f"add(1, 1) returned {value!r}")
    check(waited < 2.5, f"the immediate task waited {waited:.1f} s behind 6 ETA tasks")
    values = [result.get(timeout=20) for result in held]
    check(values == list(range(6)), f"ETA tasks returned {values}")
    return f"immediate task done in {waited:.2f} s behind 6 held ETA tasks"


def control_ping():
    deadline = time.monotonic() + 10
    replies = []
    while not replies and time.monotonic() < deadline:
        replies = app.control.ping(timeout=1.0)
    check(replies, "no worker answered the ping")
    check(any("ok" in str(reply) for reply in replies), f"replies {replies}")
    return f"{len(replies)} worker(s) answered pong"


try:
    scenario("task-roundtrip", task_roundtrip)
    scenario("task-group", task_group)
    scenario("task-exception", task_exception)
    scenario("eta-does-not-block", eta_tasks_do_not_block)
    scenario("control-ping", control_ping)
    check(worker.poll() is None, f"the worker exited with {worker.returncode}")
finally:
    worker.terminate()
    try:
        worker.wait(timeout=10)
    except subprocess.TimeoutExpired:
        worker.kill()
        worker.wait(timeout=5)
finish()
