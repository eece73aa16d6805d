"""The Celery app of the compat run: the AMQP broker under test and the rpc:// result backend.

The queue name comes from the environment so each run has its own."""

import os

from celery import Celery

app = Celery(
    "tributary_compat",
    broker=f"amqp://guest:guest@127.0.0.1:{os.environ['AMQP_PORT']}//",
    backend="rpc://",
)
app.conf.update(
    task_default_queue=os.environ.get("CELERY_COMPAT_QUEUE", "celery"),
    broker_connection_retry_on_startup=False,
    broker_connection_max_retries=1,
    worker_hijack_root_logger=False,
    worker_prefetch_multiplier=4,
)


@app.task
def add(x, y):
    return x + y


@app.task
def fail():
    raise ValueError("expected failure")
