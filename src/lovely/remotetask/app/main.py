"""The ``remotetask`` command.

``remotetask serve`` publishes the Rotterdam ZMI with lovely.remotetask on
waitress; ``remotetask worker`` runs only processors.  Both read the same
``zope.conf`` and load the same site ZCML.  See ``docs/server.rst``.
The operator's commands (``service``, ``jobs``, ``add``, ``cancel``,
``retry``, ``clean``, ``workers``, ``stats``) are in ``cli/``.
"""
import argparse
import logging
import os
import signal
import sys
import threading

import zc.lockfile
from zope.principalregistry.principalregistry import DuplicateId
from zope.principalregistry.principalregistry import DuplicateLogin

from lovely.remotetask.app import cli
from lovely.remotetask.app import credentials
from lovely.remotetask.app import instance
from lovely.remotetask.app import settings as web
from lovely.remotetask.app import wsgi
from lovely.remotetask.app.database import close_databases
from lovely.remotetask.app.database import InvalidConfiguration
from lovely.remotetask.app.database import describe_storage
from lovely.remotetask.app.database import open_database
from lovely.remotetask.app.database import stop_processors
from lovely.remotetask.processor import runWorker


logger = logging.getLogger('lovely.remotetask.app')

DEFAULT_HOST = '127.0.0.1'
LOOPBACK = ('127.0.0.1', 'localhost', '::1')
DEFAULT_PORT = 8080
DEFAULT_SERVICES = '*@*'
#: Seconds a stopping process waits for its running jobs.
DEFAULT_SHUTDOWN_TIMEOUT = 30.0
DEFAULT_POLL_INTERVAL = 0.5


def positive(text):
    """An argument that is an integer of at least 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f'{text} is not at least 1')
    return value


def make_parser():
    parser = argparse.ArgumentParser(
        prog='remotetask',
        description='Run a lovely.remotetask server or worker, and manage '
                    'the task services of its database.')
    commands = parser.add_subparsers(dest='command', metavar='COMMAND',
                                     required=True)

    def common(command):
        command.add_argument(
            '--config', metavar='PATH',
            help='the zope.conf to read (default: %s, which serve creates '
                 'on first start)' % instance.DEFAULT_CONFIG)
        command.add_argument(
            '--shutdown-timeout', metavar='SECONDS', type=float,
            default=DEFAULT_SHUTDOWN_TIMEOUT,
            help='how long to wait for running jobs when stopping; a job '
                 'still running then is taken up by another worker when '
                 'its lease expires (default: %(default)s)')

    serve = commands.add_parser(
        'serve', help='serve the ZMI and the XML-RPC API',
        description='Serve the Rotterdam ZMI with lovely.remotetask on '
                    'waitress.  Processors of the task services start as '
                    'zope.conf says (autostart).')
    common(serve)
    serve.add_argument('--host', default=DEFAULT_HOST,
                       help='the address to listen on (default: '
                            '%(default)s)')
    serve.add_argument('--port', type=int, default=DEFAULT_PORT,
                       help='the port to listen on; 0 picks a free one '
                            '(default: %(default)s)')
    serve.add_argument('--threads', type=positive, default=4, metavar='N',
                       help='threads serving requests (default: '
                            '%(default)s)')
    serve.set_defaults(func=serve_command)

    worker = commands.add_parser(
        'worker', help='run the processors only, no web server',
        description='Process the jobs of task services in the database of '
                    'zope.conf, without a web server.  The autostart '
                    'setting of zope.conf is ignored: --services says what '
                    'is processed.')
    common(worker)
    worker.add_argument(
        '--services', default=DEFAULT_SERVICES, metavar='SPEC',
        help='the task services to process, in the autostart syntax: '
             'site@service, comma separated; "*" matches every site or '
             'service, an empty site is the root folder (default: '
             '%(default)s)')
    worker.add_argument('--threads', type=positive, default=1,
                        metavar='N',
                        help='jobs run at the same time (default: '
                             '%(default)s)')
    worker.add_argument(
        '--poll-interval', metavar='SECONDS', type=float,
        default=DEFAULT_POLL_INTERVAL,
        help='how often an idle worker looks for new jobs: commits of '
             'other processes cannot wake it (default: %(default)s)')
    worker.add_argument(
        '--metrics-port', type=int, default=None, metavar='PORT',
        help='answer /metrics and /health on this port (0 picks a free '
             'one; default: none)')
    worker.add_argument(
        '--metrics-host', default=DEFAULT_HOST, metavar='HOST',
        help='the address of --metrics-port; whoever reaches it reads '
             'the metrics, without a login (default: %(default)s)')
    worker.add_argument(
        '--metrics-allow-host', action='append', default=[],
        metavar='NAME', type=_allowedHost,
        help='a name by which clients ask --metrics-port (its Host '
             'header), besides localhost and the address; others are '
             'answered 421 (against DNS rebinding; repeatable)')
    worker.set_defaults(func=worker_command)
    cli.addCommands(commands)
    return parser


def _allowedHost(value):
    """A name of ``--metrics-allow-host``; an error (at once, before the
    worker starts) unless it is a host name or address."""
    from lovely.remotetask.app.monitor import allowedHost
    try:
        return allowedHost(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f'{value!r} is not a host name or address (with or without '
            f'a port), e.g. metrics.example or 10.0.0.5') from None


#: The files the commands create (the instance, the database and its
#: index, lock and temporary files) are their owner's only.
UMASK = 0o077


def main(argv=None):
    """The console script: ``remotetask serve|worker [options]``."""
    args = make_parser().parse_args(argv)
    os.umask(UMASK)
    try:
        return args.func(args)
    except (instance.ConfigurationMissing,
            InvalidConfiguration,
            web.InvalidSetting,
            credentials.InvalidCredentials) as e:
        print(f'remotetask: {e}', file=sys.stderr)
        return 2
    except (DuplicateLogin, DuplicateId) as e:
        print(f'remotetask: the administrator cannot be registered: '
              f'{type(e).__name__} {e} (a principal of the site ZCML has '
              f'it); choose another login with '
              f'{credentials.ENVIRON}=login:password', file=sys.stderr)
        return 2
    except zc.lockfile.LockError as e:
        print(f'remotetask: the database is in use by another process '
              f'({e}).  A FileStorage serves one process; to share a '
              f'database between processes use ZEO or RelStorage (see '
              f'docs/server.rst).', file=sys.stderr)
        return 2


def config_path(config, create):
    """The zope.conf to read; on first start, the new default instance."""
    if config is None and create and not os.path.exists(
            instance.DEFAULT_CONFIG):
        for path in instance.make():
            print(f'Created {path} (yours to edit)', flush=True)
    return instance.resolve(config, create=False)


# -- signals ---------------------------------------------------------------

class Signals:
    """SIGTERM and SIGINT: the first one stops, a second SIGINT forces.

    ``stop`` is called for the first signal (in the main thread, as
    Python calls signal handlers).  A SIGINT while stopping (Ctrl-C
    twice) ends the process at once with exit code 1; committed data is
    safe, running jobs are taken up again when their leases expire.  A
    SIGTERM while stopping changes nothing: the stop goes on cleanly (a
    process group is often signalled more than once, by ``make``, by
    ``docker stop`` and its init); SIGKILL is the way to cut it short.
    """

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self, stop, final=False):
        self._stop = stop
        #: The process ends after the block: a SIGTERM that comes after
        #: it (late, from the same ``docker stop`` or process group) is
        #: ignored instead of killing a process that stopped cleanly.
        self.final = final
        self.received = None
        self._previous = {}

    def __enter__(self):
        for signum in self.SIGNALS:
            self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc_info):
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        if self.final and self.received is not None:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)

    def _handle(self, signum, frame):
        name = signal.Signals(signum).name
        if self.received is not None and signum == signal.SIGTERM:
            logger.info('%s while stopping: still stopping cleanly '
                        '(SIGINT or SIGKILL end the process at once)', name)
            return
        if self.received is not None:
            logger.warning('%s while stopping: exiting at once', name)
            logging.shutdown()
            os._exit(1)
            return  # only reached when os._exit is replaced (tests)
        self.received = name
        logger.info('%s received: stopping', name)
        self._stop()

    def stopping(self):
        """From now on any signal ends the process at once."""
        if self.received is None:
            self.received = 'stop'


# -- serve -----------------------------------------------------------------

def _interrupt():
    raise KeyboardInterrupt


def serve_command(args):
    import waitress.server

    from lovely.remotetask.app import retry
    retry.install()

    configfile = config_path(args.config, create=True)
    application = wsgi.make_app(configfile)
    db = wsgi.database()
    logger.info('Opened the database %s', describe_storage(db))
    if args.config is None:
        instance.check_private(instance.DEFAULT_VAR)
    if args.host not in LOOPBACK:
        logger.warning(
            'Listening on %s: other machines can connect.  Passwords '
            'travel in the clear over HTTP; put an HTTPS proxy in front.',
            args.host)
    server = None
    status = 0
    # waitress's loop ends on KeyboardInterrupt; SIGTERM raises it too.
    with Signals(_interrupt, final=True) as signals:
        try:
            # waitress refuses larger bodies (413) while receiving them,
            # chunked ones too.
            server = waitress.server.create_server(
                application, host=args.host, port=args.port,
                threads=args.threads,
                max_request_body_size=web.load().max_request_body)
            for host, port in _listening(server):
                print(f'Serving on http://{host}:{port}/manage',
                      flush=True)
                logger.info('Listening on %s:%s', host, port)
            server.run()
        except KeyboardInterrupt:
            pass
        except (OSError, ValueError) as e:
            # ValueError: waitress cannot read the address (256.1.1.1).
            logger.error('Cannot listen on %s:%s: %s',
                         args.host, args.port, e)
            status = 1
        finally:
            signals.stopping()
            if server is not None:
                server.close()
            stop_processors(args.shutdown_timeout)
            close_databases(db)
    return status


def _listening(server):
    listen = getattr(server, 'effective_listen', None)
    if listen is None:
        listen = [(server.effective_host, server.effective_port)]
    for host, port in listen:
        yield (f'[{host}]' if ':' in host else host), port


# -- worker ----------------------------------------------------------------

def worker_command(args):
    configfile = config_path(args.config, create=False)
    db = open_database(configfile, autostart=False)
    logger.info('Worker connected to %s (configuration %s)',
                describe_storage(db), configfile)
    try:
        # Jobs the administrator added run as it here too.
        credentials.registerForJobs(configfile)
    except BaseException:
        close_databases(db)
        raise
    if args.config is None:
        instance.check_private(instance.DEFAULT_VAR)
    logger.info('Processing services %s with %d thread(s)',
                args.services, args.threads)
    monitor = None
    if args.metrics_port is not None:
        monitor = _startMonitor(db, args.metrics_host, args.metrics_port,
                                args.metrics_allow_host)
        if monitor is None:
            close_databases(db)
            return 1
    stop = threading.Event()

    def stopSoon():
        # Not stop.set() itself: a signal handler runs in the main thread,
        # which may hold the event's lock at that moment (in stop.wait).
        threading.Thread(target=stop.set, daemon=True).start()
    with Signals(stopSoon, final=True) as signals:
        try:
            runWorker(db, services=args.services, threads=args.threads,
                      stop=stop, waitTime=args.poll_interval,
                      timeout=args.shutdown_timeout)
        finally:
            signals.stopping()
            stop.set()
            if monitor is not None:
                monitor.close()
            close_databases(db)
    return 0


def _startMonitor(db, host, port, names=()):
    """The monitoring server of a worker (app/monitor.py), or None."""
    from lovely.remotetask.app.monitor import MonitorServer
    try:
        monitor = MonitorServer(db, host, port, names)
    except (OSError, ValueError) as e:
        logger.error('Cannot listen on %s:%s: %s', host, port, e)
        return None
    if host not in LOOPBACK:
        logger.warning(
            'Metrics and health on %s: other machines can read them '
            '(no login).', host)
    host, port = monitor.address
    host = f'[{host}]' if ':' in host else host
    print(f'Metrics on http://{host}:{port}/metrics', flush=True)
    logger.info('Metrics and health on %s:%s', host, port)
    return monitor.start()
