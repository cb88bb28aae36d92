"""``remotetask jobs list|show``, ``add``, ``cancel``, ``retry``,
``clean``: the jobs of a service from the command line.

The data is what the JSON API answers (``lovely.remotetask.jsonapi.data``)
and ``--json`` prints it as such.  Commands that change many jobs commit
in batches (``bulk.inBatches``) and draw a progress bar on a terminal.

What a job holds (whoever adds it chooses) is printed with its control
characters escaped (``logsafe.printable``): an error message cannot
clear the terminal or write over a line.
"""
import json
import sys

from lovely.remotetask import bulk
from lovely.remotetask.app.logsafe import printable
from lovely.remotetask.app.cli.session import CommandError
from lovely.remotetask.app.progress import Progress
from lovely.remotetask.history import RETRYABLE
from lovely.remotetask.interfaces import CANCELLABLE
from lovely.remotetask.interfaces import ERROR
from lovely.remotetask.interfaces import NotRetryable
from lovely.remotetask.interfaces import REMOVABLE
from lovely.remotetask.interfaces import STARTLATER
from lovely.remotetask.jsonapi import data
from lovely.remotetask.jsonapi.errors import SERVICE_ERRORS


#: Jobs added per transaction by ``add --inputs``.
BATCH_SIZE = 1000


def printJSON(value, out):
    print(json.dumps(value, indent=2, sort_keys=True), file=out)


def short(text, width):
    text = printable('' if text is None else str(text).replace('\n', ' '))
    return text if len(text) <= width else text[:width - 3] + '...'


def date(value):
    return '' if value is None else value.strftime('%Y-%m-%d %H:%M:%S')


def list_(session, args, out):
    service = session.service(args.service)
    jobs = service.listJobs(status=args.status, task=args.task,
                            size=args.size, reverse=args.reverse)
    total = service.countJobs(status=args.status, task=args.task)
    if args.json:
        printJSON({'total': total,
                   'jobs': [data.jobSummary(job) for job in jobs]}, out)
        return 0
    print(f'{"ID":>10}  {"TASK":<16} {"STATUS":<12} {"CREATED (UTC)":<19}'
          f'  {"TRIES":>5}  ERROR', file=out)
    for job in jobs:
        print(f'{job.id:>10}  {short(job.task, 16):<16} {job.status:<12} '
              f'{date(job.created):<19}  {job.attempts:>5}  '
              f'{short(job.error, 40)}', file=out)
    print(f'{len(jobs)} of {total} jobs', file=out)
    return 0


def jobOf(service, jobid):
    try:
        return service._job(jobid)
    except SERVICE_ERRORS as error:
        raise CommandError(str(error)) from None


def show(session, args, out):
    job = data.jobDetail(jobOf(session.service(args.service), args.jobid))
    if args.json:
        printJSON(job, out)
        return 0
    for name in ('id', 'task', 'status', 'addedBy', 'created', 'started',
                 'completed', 'attempts', 'worker', 'maxRetries',
                 'retryDelay', 'leaseExpires', 'schedule', 'error'):
        if name in job and job[name] is not None:
            print(f'{name + ":":<13} {printable(job[name])}', file=out)
    for name in ('input', 'output'):
        text = json.dumps(job[name], indent=2, sort_keys=True)
        print(f'{name + ":":<13} ' + text.replace('\n', '\n' + ' ' * 14),
              file=out)
    if job['traceback']:
        print(printable(job['traceback'].rstrip(), lines=True), file=out)
    return 0


def parseInput(text, where='--input'):
    try:
        return json.loads(text)
    except ValueError as error:
        raise CommandError(f'{where}: not JSON: {error}') from None


def add(session, args, out):
    service = session.service(args.service)
    if args.inputs is not None:
        return addMany(session, service, args, out)
    input = None if args.input is None else parseInput(args.input)
    try:
        if args.delay is not None:
            jobid = service.addCronJob(args.task, input, delay=args.delay)
        else:
            jobid = service.add(args.task, input, args.start_later)
    except SERVICE_ERRORS as error:
        raise CommandError(str(error)) from None
    session.commit()
    print(jobid, file=out)
    return 0


def readInputs(path):
    """The inputs of ``--inputs``: one JSON value a line."""
    stream = sys.stdin if path == '-' else open(path, encoding='utf-8')
    try:
        return [parseInput(line, f'{path} line {number}')
                for number, line in enumerate(stream, 1) if line.strip()]
    finally:
        if stream is not sys.stdin:
            stream.close()


def addMany(session, service, args, out):
    """One job for each line of ``--inputs``, committed in batches."""
    inputs = readInputs(args.inputs)
    progress = Progress(len(inputs), 'Adding')
    added = 0
    try:
        for start in range(0, len(inputs), BATCH_SIZE):
            for input in inputs[start:start + BATCH_SIZE]:
                service.add(args.task, input, args.start_later)
            session.commit()
            added = min(start + BATCH_SIZE, len(inputs))
            progress(added)
    except SERVICE_ERRORS as error:
        raise CommandError(f'{error} (the first {added} jobs were added)'
                           ) from None
    finally:
        progress.finish()
    print(f'Added {added} jobs', file=out)
    return 0


def cancel(session, args, out):
    service = session.service(args.service)
    if args.all:
        total = sum(service.countJobs(status=s) for s in CANCELLABLE)
        progress = Progress(total, 'Cancelling')
        try:
            count = bulk.cancelAll(service, progress=progress)
        finally:
            progress.finish()
        print(f'Cancelled {count} jobs', file=out)
        return 0
    return each(session, service, args, out, 'cancel', 'cancelled',
                ', '.join(CANCELLABLE))


def each(session, service, args, out, method, done, allowed):
    """``method`` for each job id (True, None: done; False or
    ``NotRetryable``: refused); exit status 1 if one was refused."""
    if not args.jobids:
        if method == 'startJob':
            raise CommandError('name the jobs')
        raise CommandError('name the jobs, or use --all')
    refused = 0
    for jobid in args.jobids:
        job = jobOf(service, jobid)
        try:
            changed = getattr(service, method)(jobid) is not False
        except NotRetryable:
            changed = False
        if changed:
            print(f'{jobid} {done}', file=out)
        else:
            refused += 1
            print(f'{jobid} is {job.status}: only {allowed} jobs can be '
                  f'{done}', file=out)
    session.commit()
    return 1 if refused else 0


def start(session, args, out):
    return each(session, session.service(args.service), args, out,
                'startJob', 'queued', STARTLATER)


def retry(session, args, out):
    service = session.service(args.service)
    if args.all:
        total = service.countJobs(status=ERROR, task=args.task)
        progress = Progress(total, 'Retrying')
        try:
            count = bulk.retryAll(service, ERROR, args.task,
                                  progress=progress)
        finally:
            progress.finish()
        print(f'Queued {count} failed jobs again', file=out)
        return 0
    return each(session, service, args, out, 'retry', 'queued again',
                ' or '.join(RETRYABLE))


def clean(session, args, out):
    service = session.service(args.service)
    statuses = tuple(args.status or REMOVABLE)
    total = sum(service.countJobs(status=s) for s in statuses)
    progress = Progress(total, 'Removing')
    try:
        count = bulk.clean(service, statuses, progress=progress)
    finally:
        progress.finish()
    print(f'Removed {count} jobs ({", ".join(statuses)})', file=out)
    return 0
