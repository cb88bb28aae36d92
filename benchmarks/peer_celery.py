"""Celery with a Redis broker: the peer's app module (peers.py).

No result backend (the protocol measures enqueue and start, not
results); everything else is Celery's default.
"""
import os

from celery import Celery

from common import StartLog

app = Celery('bench', broker=os.environ['BENCH_REDIS_URL'])
app.conf.task_ignore_result = True
app.conf.worker_hijack_root_logger = False


@app.task
def noop(key):
    StartLog.note(key)
