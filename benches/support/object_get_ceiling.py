"""What the S3 server alone serves: range GETs of one object, from one and from four threads.

The ceiling beside the cloud engine's consume rate (BENCHMARKS.md, "Cloud engine vs local
engine"). Run with the services' environment and a Python that has boto3 (the moto venv has it):

    eval "$(bash .ci/services start)"
    ~/.cache/tributary-services/moto-venv/bin/python benches/support/object_get_ceiling.py
"""

import concurrent.futures
import os
import time

import boto3

OBJECT_BYTES = 8 << 20  # the default flush size, so objects are as large as the engine's
RANGE_BYTES = 1 << 20
GETS = 256

s3 = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"],
                  region_name=os.environ.get("AWS_REGION", "us-east-1"))
bucket = os.environ["TRIBUTARY_TEST_S3_BUCKET"]
key = f"ceiling/{os.getpid()}"
s3.put_object(Bucket=bucket, Key=key, Body=os.urandom(OBJECT_BYTES))


def get(index):
    start = (index % (OBJECT_BYTES // RANGE_BYTES)) * RANGE_BYTES
    reply = s3.get_object(Bucket=bucket, Key=key, Range=f"bytes={start}-{start + RANGE_BYTES - 1}")
    return len(reply["Body"].read())


for threads in (1, 4):
    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        total = sum(pool.map(get, range(GETS)))
    elapsed = time.monotonic() - started
    print(f"{threads} thread(s): {total / elapsed / 2**20:.1f} MiB/s, {GETS / elapsed:.0f} GETs/s")
s3.delete_object(Bucket=bucket, Key=key)
