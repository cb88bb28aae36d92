"""The operator's commands of ``remotetask`` (see README.rst here).

``addCommands`` adds them to the parser of ``remotetask`` (main.py):

- ``service create NAME [--site PATH]``, ``service set NAME NAME=VALUE``,
  ``service list``;
- ``jobs list``, ``jobs show ID``;
- ``add TASK``, ``cancel``, ``retry``, ``start``, ``clean``;
- ``workers``, ``pause``, ``resume``, ``stats [--watch SECONDS]``.

Each opens the database of ``zope.conf`` (``session.Session``) for the
time it runs.
"""
import argparse
import os
import sys

from lovely.remotetask.app import instance
from lovely.remotetask.app.logsafe import printable
from lovely.remotetask.app.cli import jobs
from lovely.remotetask.app.cli import services
from lovely.remotetask.app.cli import watch
from lovely.remotetask.app.cli.session import CommandError
from lovely.remotetask.app.cli.session import Session
from lovely.remotetask.interfaces import MAX_COUNT
from lovely.remotetask.interfaces import REMOVABLE
from lovely.remotetask.interfaces import STATUSES


def runner(command):
    """The ``func`` of a parsed command: open the database, run
    ``command(session, args, out)``, print errors."""
    def run(args):
        try:
            with Session(args.config, args.verbose) as session:
                return command(session, args, sys.stdout)
        except CommandError as error:
            print(f'remotetask: {printable(error)}', file=sys.stderr)
            return 2
        except BrokenPipeError:
            # The reader went away (``| head``): stop quietly, and keep
            # Python from complaining again when it flushes stdout.
            _silenceStdout()
            return 1
    return run


def _silenceStdout():
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (AttributeError, OSError, ValueError):
        pass   # not a file (a test's stream)


def jobid(text):
    if not (text.isascii() and text.isdigit()):
        raise argparse.ArgumentTypeError(f'{text!r} is not a job id')
    return int(text)


def seconds(text):
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f'{text} is not >= 0 seconds')
    return value


def priority(text):
    if not (text.isascii() and text.isdigit()) or int(text) > 9:
        raise argparse.ArgumentTypeError(
            f'{text!r} is not a priority (0 to 9)')
    return int(text)


def positive(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f'{text} is not at least 1')
    if value > MAX_COUNT:
        raise argparse.ArgumentTypeError(
            f'{text} is not from 1 to {MAX_COUNT}')
    return value


def common(parser, service=True):
    parser.add_argument(
        '--config', metavar='PATH',
        help=f'the zope.conf to read (default: {instance.DEFAULT_CONFIG})')
    parser.add_argument('-v', '--verbose', action='store_true',
                        help='show the log below warnings too')
    if service:
        parser.add_argument(
            '--service', metavar='PATH',
            help='the task service: its path from the root folder '
                 '(default: the only one)')


def command(commands, name, func, help, service=True, **kw):
    parser = commands.add_parser(name, help=help, description=help, **kw)
    common(parser, service)
    parser.set_defaults(func=runner(func))
    return parser


def addCommands(commands):
    """Add the commands to the subparsers ``commands`` of ``remotetask``.
    """
    serviceParser = commands.add_parser(
        'service', help='create task services, change their settings')
    serviceCommands = serviceParser.add_subparsers(
        dest='subcommand', metavar='SUBCOMMAND', required=True)
    create = command(serviceCommands, 'create', services.create,
                     'add a task service to the root folder or a site',
                     service=False)
    create.add_argument('name', metavar='NAME')
    create.add_argument('--site', metavar='PATH',
                        help='a folder of the root folder (created, and '
                             'made a site, if needed)')
    setting = command(
        serviceCommands, 'set', services.set_,
        'change settings of a task service: '
        + ', '.join(f'{name}=...' for name in services.SETTINGS),
        service=False)
    setting.add_argument('service', metavar='NAME',
                         help='the path of the service')
    setting.add_argument('settings', metavar='NAME=VALUE', nargs='+')
    command(serviceCommands, 'list', services.list_,
            'the task services and their settings', service=False)

    jobsParser = commands.add_parser('jobs', help='list and show jobs')
    jobsCommands = jobsParser.add_subparsers(
        dest='subcommand', metavar='SUBCOMMAND', required=True)
    listing = command(jobsCommands, 'list', jobs.list_, 'list jobs')
    listing.add_argument('--status', choices=STATUSES)
    listing.add_argument('--task')
    listing.add_argument('--size', type=positive, default=50,
                         help='how many (default: %(default)s)')
    listing.add_argument('--reverse', action='store_true',
                         help='in reverse order (of status time with '
                              '--status, else of id)')
    listing.add_argument('--json', action='store_true',
                         help='as the JSON API answers')
    show = command(jobsCommands, 'show', jobs.show, 'show one job')
    show.add_argument('jobid', metavar='ID', type=jobid)
    show.add_argument('--json', action='store_true')

    adding = command(commands, 'add', jobs.add, 'add a job (or many)')
    adding.add_argument('task', metavar='TASK')
    given = adding.add_mutually_exclusive_group()
    given.add_argument('--input', metavar='JSON',
                       help='the input of the job, as JSON')
    given.add_argument('--inputs', metavar='FILE',
                       help='add one job per line of FILE (- for standard '
                            'input), each line a JSON input')
    when = adding.add_mutually_exclusive_group()
    when.add_argument('--delay', metavar='SECONDS', type=seconds,
                      help='run once, this many seconds from now')
    when.add_argument('--start-later', action='store_true',
                      help='wait for `remotetask start` (or the ZMI)')
    control = adding.add_argument_group(
        'job control', 'see jobcontrol.rst; not with --delay')
    control.add_argument('--priority', metavar='N', type=priority,
                         help='0 (lowest) to 9 (highest); default 5: due '
                              'jobs of a higher priority run first')
    control.add_argument('--unique-key', metavar='KEY',
                         help='add no job while a job with this key has '
                              'not ended: print its id instead')
    control.add_argument('--after', metavar='ID', type=jobid,
                         action='append', default=[],
                         help='wait until the job ID completed '
                              '(repeatable)')
    control.add_argument('--run-anyway', action='store_true',
                         help='with --after: run when those jobs ended, '
                              'however they ended')

    for name, func, help in (
            ('cancel', jobs.cancel, 'cancel jobs (queued, delayed, cron, '
                                    'start later, waiting)'),
            ('retry', jobs.retry, 'queue failed jobs again'),
            ('start', jobs.start, 'queue jobs added with --start-later')):
        parser = command(commands, name, func, help)
        parser.add_argument('jobids', metavar='ID', type=jobid, nargs='*')
        if name != 'start':
            parser.add_argument('--all', action='store_true',
                                help='every one there is')
        if name == 'retry':
            parser.add_argument('--task',
                                help='with --all: only jobs of this task')

    cleaning = command(commands, 'clean', jobs.clean,
                       'remove finished jobs')
    cleaning.add_argument('--status', choices=REMOVABLE, action='append',
                          help='only jobs in this status (repeatable; '
                               'default: all of ' + ', '.join(REMOVABLE)
                               + ')')

    for name, help in (('pause', 'stop every worker from claiming jobs '
                                 'of the service'),
                       ('resume', 'let the workers claim jobs again')):
        command(commands, name, getattr(watch, name), help)

    workers = command(commands, 'workers', watch.workers,
                      'the workers of a service')
    workers.add_argument('--json', action='store_true')
    stats = command(commands, 'stats', watch.stats,
                    'counts and rates of a service')
    stats.add_argument('--watch', metavar='SECONDS', type=seconds,
                       help='refresh every SECONDS until interrupted')
    stats.add_argument('--count', metavar='N', type=positive,
                       help='with --watch: stop after N refreshes')
    stats.add_argument('--json', action='store_true',
                       help='one JSON object a line')
