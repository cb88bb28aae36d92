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
from lovely.remotetask.interfaces import DuplicateJob
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


def ids(jobids, shown=20):
    """Job ids in a line: the first ``shown`` of them.

    >>> ids([3, 4]), ids(list(range(1, 31)), 3)
    ('3, 4', '1, 2, 3 and 27 more')
    """
    text = ', '.join(str(jobid) for jobid in jobids[:shown])
    more = len(jobids) - shown
    return text + (f' and {more} more' if more > 0 else '')


def control(job):
    """The lines of ``jobs show`` about job control and progress, as
    ``(name, text)``, of the data of ``jobDetail``.

    >>> control({'priority': 7, 'uniqueKey': 'k', 'after': [3, 4],
    ...          'runAnyway': True, 'waitingFor': [4], 'dependants': [],
    ...          'heldBack': None,
    ...          'progress': {'fraction': 0.25, 'message': 'a\\nb'}})
    [('priority', '7'), ('uniqueKey', 'k'), ('after', '3, 4 (runs anyway)'),
     ('waitingFor', '4'), ('progress', '25 % a b')]
    >>> control({'priority': 5, 'uniqueKey': None, 'after': [],
    ...          'runAnyway': False, 'waitingFor': [], 'dependants': [9],
    ...          'heldBack': 'Held back.',
    ...          'progress': {'fraction': None, 'message': None}})
    [('priority', '5'), ('dependants', '9'), ('heldBack', 'Held back.'),
     ('progress', 'reported, without fraction or message')]
    """
    lines = [('priority', str(job['priority']))]
    if job['uniqueKey'] is not None:
        lines.append(('uniqueKey', job['uniqueKey']))
    if job['after']:
        anyway = ' (runs anyway)' if job['runAnyway'] else ''
        lines.append(('after', ids(job['after']) + anyway))
    for name in ('waitingFor', 'dependants'):
        if job[name]:
            lines.append((name, ids(job[name])))
    if job['heldBack'] is not None:
        lines.append(('heldBack', job['heldBack']))
    report = job['progress']
    if report is not None:
        fraction, message = report['fraction'], report['message']
        text = ' '.join(filter(None, (
            None if fraction is None else f'{fraction * 100:.0f} %',
            None if message is None else ' '.join(message.split()))))
        lines.append(('progress',
                      text or 'reported, without fraction or message'))
    return lines


def show(session, args, out):
    job = data.jobDetail(jobOf(session.service(args.service), args.jobid))
    if args.json:
        printJSON(job, out)
        return 0
    lines = [(name, job[name]) for name in (
        'id', 'task', 'status', 'addedBy', 'created', 'started',
        'completed', 'attempts', 'worker', 'maxRetries', 'retryDelay',
        'leaseExpires', 'schedule') if name in job]
    lines += control(job) + [('error', job['error'])]
    for name, value in lines:
        if value is not None:
            print(f'{name + ":":<13} {printable(value)}', file=out)
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


#: The options of job control: (option, argument name).
CONTROL = (('--priority', 'priority'), ('--unique-key', 'unique_key'),
           ('--after', 'after'), ('--run-anyway', 'run_anyway'))


def controlOptions(args):
    """The keyword arguments of ``service.add`` for the options of job
    control; ``CommandError`` for options that do not go together."""
    given = [option for option, name in CONTROL if getattr(args, name)
             not in (None, [], False)]
    if given and args.delay is not None:
        raise CommandError('--delay takes no ' + ', '.join(given)
                           + ' (a delayed job is a cron job of one run)')
    if args.run_anyway and not args.after:
        raise CommandError('--run-anyway needs --after')
    if args.unique_key is not None and args.inputs is not None:
        raise CommandError('--unique-key adds one job: not with --inputs')
    options = {'uniqueKey': args.unique_key, 'after': args.after,
               'runAnyway': args.run_anyway}
    if args.priority is not None:
        options['priority'] = args.priority
    return options


def add(session, args, out):
    service = session.service(args.service)
    options = controlOptions(args)
    if args.inputs is not None:
        return addMany(session, service, args, out, options)
    input = None if args.input is None else parseInput(args.input)
    try:
        if args.delay is not None:
            jobid = service.addCronJob(args.task, input, delay=args.delay)
        else:
            jobid = service.add(args.task, input, args.start_later,
                                onDuplicate='raise', **options)
    except DuplicateJob as duplicate:
        # Nothing was added: the id of the job that holds the key.
        print(duplicate.jobid, file=out)
        print(f'remotetask: {duplicate}: no job was added',
              file=sys.stderr)
        return 0
    except (ValueError,) + SERVICE_ERRORS as error:
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


def addMany(session, service, args, out, options):
    """One job for each line of ``--inputs``, committed in batches (with
    the same options of job control)."""
    inputs = readInputs(args.inputs)
    progress = Progress(len(inputs), 'Adding')
    added = 0
    try:
        for start in range(0, len(inputs), BATCH_SIZE):
            for input in inputs[start:start + BATCH_SIZE]:
                service.add(args.task, input, args.start_later, **options)
            session.commit()
            added = min(start + BATCH_SIZE, len(inputs))
            progress(added)
    except (ValueError,) + SERVICE_ERRORS as error:
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
