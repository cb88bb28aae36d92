"""``remotetask workers`` and ``remotetask stats``: how the queue is doing.

``stats`` counts the jobs of each status and tells the rates: jobs
completed and failed in the last minute and hour (read from the newest
end of their status, at most ``RATE_SCAN`` jobs each, so a large table
costs no more), and with ``--watch SECONDS`` it refreshes, adding the
throughput since the last refresh.
"""
import datetime
import json
import time

from lovely.remotetask.app.logsafe import printable
from lovely.remotetask.interfaces import COMPLETED
from lovely.remotetask.interfaces import ERROR
from lovely.remotetask.interfaces import STATUSES
from lovely.remotetask.jsonapi import data


UTC = datetime.timezone.utc
#: The most jobs of a status that are read to tell a rate.
RATE_SCAN = 10000
#: The windows of the rates, in seconds.
WINDOWS = (('minute', 60), ('hour', 3600))


def workers(session, args, out):
    service = session.service(args.service)
    found = data.jsonable(service.listWorkers())
    if args.json:
        print(json.dumps({'paused': service.isPaused(), 'workers': found},
                         indent=2, sort_keys=True), file=out)
        return 0
    print(f'Paused: {"yes" if service.isPaused() else "no"}', file=out)
    if not found:
        print('No workers.', file=out)
        return 0
    print(f'{"WORKER":<40} {"STATUS":<8} {"AGE":>6} {"DONE":>7} '
          f'{"FAILED":>7}  RUNNING', file=out)
    for w in found:
        running = ', '.join(map(str, w['running'])) or '-'
        print(f'{printable(w["id"]):<40} {printable(w["status"]):<8} '
              f'{w["age"]:>5.0f}s '
              f'{w["done"]:>7} {w["failed"]:>7}  {running}', file=out)
    return 0


def pause(session, args, out):
    session.service(args.service).pause()
    session.commit()
    print('Paused: no worker claims jobs of the service until `remotetask '
          'resume` (running jobs finish).', file=out)
    return 0


def resume(session, args, out):
    session.service(args.service).resume()
    session.commit()
    print('Resumed: the workers claim jobs again.', file=out)
    return 0


def recent(service, status, now):
    """How many jobs entered ``status`` within each window before ``now``
    (by their ``completed`` time), reading at most ``RATE_SCAN`` jobs."""
    counts = dict.fromkeys(name for name, seconds in WINDOWS)
    longest = max(seconds for name, seconds in WINDOWS)
    ages = []
    for job in service.listJobs(status=status, reverse=True,
                                size=RATE_SCAN):
        if job.completed is None:
            continue
        age = (now - job.completed).total_seconds()
        if age > longest:
            break
        ages.append(age)
    for name, seconds in WINDOWS:
        counts[name] = sum(1 for age in ages if age <= seconds)
    return counts


def snapshot(service, now=None):
    """The counts and rates of a service, as JSON data."""
    now = now or datetime.datetime.now(UTC)
    return {
        'service': service.__name__,
        'time': data.isoformat(now),
        'paused': bool(service.isPaused()),
        'workers': len(service.activeWorkers()),
        'total': service.countJobs(),
        'statuses': {s: service.countJobs(status=s) for s in STATUSES},
        'completed': recent(service, COMPLETED, now),
        'failed': recent(service, ERROR, now),
    }


def render(stats, previous, out):
    print(f'{printable(stats["service"])} at {stats["time"]}  '
          f'workers alive: '
          f'{stats["workers"]}'
          f'{"  PAUSED" if stats["paused"] else ""}', file=out)
    for status in STATUSES:
        print(f'  {status:<12} {stats["statuses"][status]:>10,}', file=out)
    print(f'  {"total":<12} {stats["total"]:>10,}', file=out)
    for name in ('completed', 'failed'):
        rate = stats[name]
        print(f'  {name} in the last minute: {rate["minute"]:,} '
              f'({rate["minute"] / 60:.2f}/s), hour: {rate["hour"]:,}',
              file=out)
    if previous is not None:
        seconds = (stats['monotonic'] - previous['monotonic']) or 1e-9
        done = stats['statuses'][COMPLETED] - previous['statuses'][
            COMPLETED]
        print(f'  since the last refresh: {done:+,} completed '
              f'({done / seconds:.2f}/s)', file=out)


def stats(session, args, out):
    try:
        return _stats(session, args, out)
    except KeyboardInterrupt:  # the way to end --watch
        print(file=out)
        return 0


def _stats(session, args, out):
    previous = None
    shown = 0
    while True:
        service = session.service(args.service)
        current = snapshot(service)
        if args.json:
            print(json.dumps(current, sort_keys=True), file=out, flush=True)
        else:
            current['monotonic'] = time.monotonic()
            render(current, previous, out)
            out.flush()
        shown += 1
        if args.watch is None or (args.count and shown >= args.count):
            return 0
        previous = current
        time.sleep(args.watch)
        session.refresh()
        if not args.json:
            print(file=out)
