"""The peers: Huey (SqliteHuey), Celery + Redis, RQ + Redis.

    python benchmarks/peers.py [huey] [celery] [rq]

The protocol of issue 7, the same for every system:

* enqueue: N no-op jobs with no worker running, one call per job
  (``noop(key)``, ``noop.delay(key)``, ``queue.enqueue(noop, key)``);
  jobs/s over the N calls;
* drain: then one worker starts (Huey's consumer with one worker
  thread, Celery's ``--pool=solo``, RQ's ``SimpleWorker``); jobs/s between
  the first and the last job's start, as the tasks note them;
* latency: 200 jobs at 20/s into the idle worker; from just before the
  enqueue call to the task's start; p50 and p99.

The redis-server is our own, on a free port of 127.0.0.1, stopped by
PID; without one the Redis peers are skipped with a message.
"""
import os
import shutil
import sys
import tempfile
import time

import common
from common import emit
from common import skip


def start_redis(procs, directory):
    exe = shutil.which('redis-server')
    if exe is None:
        return None, 'no redis-server on PATH'
    port = common.free_port()
    process = procs.start(
        [exe, '--port', str(port), '--bind', '127.0.0.1', '--save', '',
         '--appendonly', 'no', '--dir', directory, '--daemonize', 'no'],
        os.path.join(directory, 'redis.log'))
    try:
        common.wait_port(port, 15, process)
    except (RuntimeError, TimeoutError) as e:
        procs.stop(process)
        return None, f'redis-server did not start: {e}'
    return f'redis://127.0.0.1:{port}/0', None


def measure(system, directory, enqueue, worker_args, env, procs, version):
    """The protocol for one peer: enqueue, drain, latency."""
    starts = os.path.join(directory, 'starts')
    os.makedirs(starts, exist_ok=True)
    common.clear_starts(starts)
    keys = [f'D{i}' for i in range(common.N)]
    t0 = time.perf_counter()
    for key in keys:
        enqueue(key)
    elapsed = time.perf_counter() - t0
    emit(system, 'enqueue', common.N / elapsed, 'jobs/s', jobs=common.N,
         version=version)
    worker = procs.start(worker_args, os.path.join(directory,
                                                   f'{system}.log'),
                         env=env, cwd=directory)
    try:
        found = common.wait_starts(starts, keys)
        emit(system, 'drain', common.drain_rate(
            [found[k] for k in keys]), 'jobs/s', jobs=common.N,
            version=version)
        time.sleep(1.0)   # idle now
        sent = common.paced(common.LATENCY_N, common.RATE, enqueue)
        found = common.wait_starts(starts, sent)
        common.latency_figures(system, sent, found, rate=common.RATE,
                               version=version)
    finally:
        procs.stop(worker)


def huey(directory, procs):
    import huey as hueymodule
    env = common.environment(BENCH_STARTS=os.path.join(directory, 'starts'),
                             BENCH_HUEY_DB=os.path.join(directory,
                                                        'huey.db'))
    os.environ.update(env)
    import peer_huey
    # Huey's consumer sleeps 0.1 s (its default --delay) when it found no
    # task; its back-off (default 1.15x up to 10 s) is switched off, so
    # that an idle consumer keeps polling every 0.1 s.
    args = [common.venv_bin('huey_consumer'), 'peer_huey.huey',
            '--workers=1', '--worker-type=thread', '--no-periodic',
            '--delay=0.1', '--max-delay=0.1', '--backoff=1',
            '--quiet']
    measure('huey-sqlite', directory, peer_huey.noop, args, env, procs,
            hueymodule.__version__)


def celery(directory, procs, url):
    import celery as celerymodule
    env = common.environment(BENCH_STARTS=os.path.join(directory, 'starts'),
                             BENCH_REDIS_URL=url)
    os.environ.update(env)
    import peer_celery
    # --without-gossip/mingle/heartbeat only shorten the start-up, which
    # the drain (first to last start) does not include anyway.
    args = [common.venv_bin('celery'), '-A', 'peer_celery', 'worker',
            '--pool=solo', '--concurrency=1', '--loglevel=WARNING',
            '--without-gossip', '--without-mingle', '--without-heartbeat']
    measure('celery-redis', directory, peer_celery.noop.delay, args, env,
            procs, celerymodule.__version__)


def rq(directory, procs, url):
    import redis
    import rq as rqmodule
    env = common.environment(BENCH_STARTS=os.path.join(directory, 'starts'),
                             BENCH_REDIS_URL=url)
    os.environ.update(env)
    import peer_rq
    queue = rqmodule.Queue('bench', connection=redis.Redis.from_url(url))
    args = [common.venv_bin('rq'), 'worker', '--url', url,
            '--worker-class', 'rq.worker.SimpleWorker', '--quiet', 'bench']

    def enqueue(key):
        queue.enqueue(peer_rq.noop, key)
    measure('rq-redis', directory, enqueue, args, env, procs,
            rqmodule.__version__)


def main(argv):
    common.stop_on_sigterm()
    which = argv or ['huey', 'celery', 'rq']
    with common.Processes() as procs:
        tmp = tempfile.mkdtemp(prefix='bench-peers-')
        try:
            if 'huey' in which:
                os.makedirs(os.path.join(tmp, 'huey'))
                try:
                    huey(os.path.join(tmp, 'huey'), procs)
                except ImportError as e:
                    skip('huey-sqlite', f'not installed ({e}): make bench '
                                        f'installs the [bench] extra')
            redis_peers = [p for p in ('celery', 'rq') if p in which]
            if redis_peers:
                url, why = start_redis(procs, tmp)
                for name in redis_peers:
                    system = f'{name}-redis'
                    if url is None:
                        skip(system, why)
                        continue
                    directory = os.path.join(tmp, name)
                    os.makedirs(directory)
                    try:
                        import redis
                        redis.Redis.from_url(url).flushall()
                        globals()[name](directory, procs, url)
                    except ImportError as e:
                        skip(system, f'not installed ({e}): make bench '
                                     f'installs the [bench] extra')
        finally:
            procs.stop_all()
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == '__main__':
    main(sys.argv[1:])
