"""The ``remotetask`` command, without starting servers."""
import io
import os
import signal
import tempfile
import unittest
from contextlib import redirect_stderr
from unittest import mock

import ZODB
import zope.testing.cleanup
from zope.app.appsetup.product import getProductConfiguration
from zope.app.appsetup.product import setProductConfiguration
from ZODB.MappingStorage import MappingStorage
from ZODB.POSException import ConflictError
from zope.processlifetime import IDatabaseOpened

from lovely.remotetask.app import database
from lovely.remotetask.app import instance
from lovely.remotetask.app import main
from lovely.remotetask.app.tests import InTemporaryDirectory


class ParserTests(unittest.TestCase):

    def parse(self, *argv):
        return main.make_parser().parse_args(argv)

    def test_serve_defaults(self):
        args = self.parse('serve')
        self.assertEqual((args.config, args.host, args.port, args.threads),
                         (None, '127.0.0.1', 8080, 4))
        self.assertIs(args.func, main.serve_command)

    def test_serve_options(self):
        args = self.parse('serve', '--config', 'etc/zope.conf', '--host',
                          '0.0.0.0', '--port', '9000')
        self.assertEqual((args.config, args.host, args.port),
                         ('etc/zope.conf', '0.0.0.0', 9000))

    def test_worker_defaults(self):
        args = self.parse('worker')
        self.assertEqual((args.config, args.services, args.threads),
                         (None, '*@*', 1))
        self.assertIs(args.func, main.worker_command)

    def test_worker_options(self):
        args = self.parse('worker', '--services', 'site1@tasks, @root',
                          '--threads', '4', '--poll-interval', '0.1',
                          '--shutdown-timeout', '5')
        self.assertEqual((args.services, args.threads, args.poll_interval,
                          args.shutdown_timeout),
                         ('site1@tasks, @root', 4, 0.1, 5.0))
        args = self.parse('worker')
        self.assertEqual((args.poll_interval, args.shutdown_timeout),
                         (0.5, 30.0))

    def test_threads_are_positive(self):
        for command in ['serve', 'worker']:
            for bad in ['0', '-1', 'x']:
                with redirect_stderr(io.StringIO()), \
                        self.assertRaises(SystemExit):
                    self.parse(command, '--threads', bad)

    def test_a_command_is_needed(self):
        with redirect_stderr(io.StringIO()), self.assertRaises(SystemExit):
            self.parse()


class ErrorTests(InTemporaryDirectory):
    """Mistakes end the command with a message and exit code 2."""

    def run_main(self, *argv, environ=None):
        stderr = io.StringIO()
        with redirect_stderr(stderr), mock.patch.dict(
                os.environ, environ or {}, clear=False):
            status = main.main(list(argv))
        return status, stderr.getvalue()

    def test_worker_without_configuration(self):
        status, message = self.run_main('worker')
        self.assertEqual(status, 2)
        self.assertIn("No configuration file 'var/zope.conf'", message)
        self.assertFalse(os.path.exists('var'))

    def test_named_configuration_missing(self):
        status, message = self.run_main('serve', '--config', 'x.conf')
        self.assertEqual(status, 2)
        self.assertIn("No configuration file 'x.conf'", message)
        self.assertFalse(os.path.exists('var'))

    def test_invalid_configuration(self):
        with open('x.conf', 'w') as f:
            f.write('<zodb>\n  <filestorage>\n  </filestorage>\n</zodb>\n')
        status, message = self.run_main('worker', '--config', 'x.conf')
        self.assertEqual(status, 2)
        self.assertTrue(message.startswith('remotetask: x.conf: '), message)

    def test_bad_admin_variable_fails_before_the_database_opens(self):
        with redirect_stderr(io.StringIO()), mock.patch('sys.stdout',
                                                        io.StringIO()):
            status, message = self.run_main(
                'serve', environ={'REMOTETASK_ADMIN': 'nocolon'})
        self.assertEqual(status, 2)
        self.assertIn('REMOTETASK_ADMIN: expected login:password', message)
        self.assertNotIn('nocolon', message)
        self.assertFalse(os.path.exists('var/Data.fs'))


class ServeCommandTests(unittest.TestCase):
    """serve_command with the database and the application replaced."""

    def serve(self, *argv):
        args = main.make_parser().parse_args(['serve', *argv])
        db = object()
        with mock.patch.object(main, 'config_path',
                               return_value='x.conf'), \
                mock.patch.object(main.wsgi, 'make_app'), \
                mock.patch.object(main.wsgi, 'database', return_value=db), \
                mock.patch.object(main, 'describe_storage',
                                  return_value='MappingStorage'), \
                mock.patch.object(main, 'stop_processors'), \
                mock.patch.object(main, 'close_databases') as close, \
                mock.patch.object(main.instance, 'check_private') as check, \
                self.assertLogs('lovely.remotetask.app') as logs:
            status = main.serve_command(args)
        close.assert_called_once_with(db)
        return status, logs.output, check

    def test_an_invalid_host_is_an_error(self):
        for host in ('256.1.1.1', 'not a host'):
            status, output, check = self.serve('--host', host, '--port', '0',
                                               '--config', 'x.conf')
            self.assertEqual(status, 1)
            self.assertIn(f'Cannot listen on {host}:0', '\n'.join(output))

    def test_the_default_instance_is_checked(self):
        status, output, check = self.serve('--host', '256.1.1.1')
        check.assert_called_once_with('var')
        status, output, check = self.serve('--host', '256.1.1.1',
                                           '--config', 'x.conf')
        check.assert_not_called()


class PrivateTests(unittest.TestCase):

    def setUp(self):
        self._tmp = tempfile.TemporaryDirectory()
        self.var = os.path.join(self._tmp.name, 'var')

    def tearDown(self):
        self._tmp.cleanup()

    def test_private(self):
        self.assertTrue(instance.check_private(self.var))  # missing
        instance.make(self.var)
        self.assertEqual(os.stat(self.var).st_mode & 0o777, 0o700)
        with self.assertNoLogs('lovely.remotetask.app', 'WARNING'):
            self.assertTrue(instance.check_private(self.var))

    def test_shared_is_reported(self):
        os.mkdir(self.var)
        os.chmod(self.var, 0o755)
        instance.make(self.var)
        with self.assertLogs('lovely.remotetask.app', 'WARNING') as logs:
            self.assertFalse(instance.check_private(self.var))
        self.assertIn('can be read by others (mode 755)', logs.output[0])
        self.assertIn(f'chmod 700 {self.var}', logs.output[0])
        # Its owner's choice: nothing is changed.
        self.assertEqual(os.stat(self.var).st_mode & 0o777, 0o755)


class ErrorLogTests(unittest.TestCase):

    def event(self, utility):
        class Folder:
            def getSiteManager(self):
                return self

            def queryUtility(self, interface):
                return utility

        class Connection:
            closed = False

            def root(self):
                return {'Application': Folder()}

            def close(self):
                self.closed = True

        self.connection = Connection()
        return mock.Mock(database=mock.Mock(
            open=lambda: self.connection))

    def test_not_found_is_ignored(self):
        from zope.error.error import ErrorReportingUtility
        from lovely.remotetask.app import errorlog
        utility = ErrorReportingUtility()
        errorlog.ignoreNotFound(self.event(utility))
        self.assertEqual(utility.getProperties()['ignored_exceptions'],
                         ('Unauthorized', 'NotFound'))
        self.assertTrue(self.connection.closed)

    def test_a_configured_log_stays(self):
        from zope.error.error import ErrorReportingUtility
        from lovely.remotetask.app import errorlog
        utility = ErrorReportingUtility()
        utility.setProperties(10, False, ('Unauthorized', 'KeyError'))
        errorlog.ignoreNotFound(self.event(utility))
        self.assertEqual(utility.getProperties(), {
            'keep_entries': 10, 'copy_to_zlog': False,
            'ignored_exceptions': ('Unauthorized', 'KeyError')})
        errorlog.ignoreNotFound(self.event(None))


class DatabaseTests(unittest.TestCase):

    def tearDown(self):
        zope.testing.cleanup.cleanUp()

    def test_describe_storage(self):
        db = ZODB.DB(MappingStorage('main'))
        self.assertEqual(database.describe_storage(db), 'MappingStorage main')
        db.close()

    def test_describe_storage_hides_passwords(self):
        db = ZODB.DB(MappingStorage(
            "dbname='x' password='s3cret' user=me password=other"))
        description = database.describe_storage(db)
        self.assertNotIn('s3cret', description)
        self.assertNotIn('other', description)
        self.assertIn("dbname='x'", description)
        db.close()

    def test_close_databases(self):
        db = ZODB.DB(MappingStorage('main'))
        other = ZODB.DB(MappingStorage('other'))
        db.databases = other.databases = {'': db, 'other': other}
        with self.assertLogs('lovely.remotetask.app') as logs:
            database.close_databases(db)
        self.assertEqual(logs.output, [
            'INFO:lovely.remotetask.app:Closed the database '
            'MappingStorage main',
            'INFO:lovely.remotetask.app:Closed the database '
            'MappingStorage other'])
        self.assertRaises(Exception, db.open)

    def test_worker_ignores_autostart(self):
        setProductConfiguration('lovely.remotetask',
                                {'autostart': '*@*', 'other': 'kept'})
        database.withoutAutostart()
        self.assertEqual(getProductConfiguration('lovely.remotetask'),
                         {'other': 'kept'})
        setProductConfiguration('lovely.remotetask', None)
        database.withoutAutostart()
        self.assertIsNone(getProductConfiguration('lovely.remotetask'))


class AnnounceTests(unittest.TestCase):
    """Processes starting together on a new database."""

    def setUp(self):
        self.events = []
        self.pauses = []

    def notify(self, failures):
        def notify(event):
            self.events.append(event)
            if len(self.events) <= failures:
                raise ConflictError()
        return notify

    def pause(self, low, high):
        self.pauses.append((low, high))
        return 0.0

    def test_once(self):
        db = object()
        self.assertEqual(
            database.announce(db, self.notify(0), pause=self.pause), 1)
        [event] = self.events
        self.assertTrue(IDatabaseOpened.providedBy(event))
        self.assertIs(event.database, db)
        self.assertEqual(self.pauses, [])

    def test_conflicts_are_repeated(self):
        with self.assertLogs('lovely.remotetask.app') as logs:
            self.assertEqual(database.announce(
                object(), self.notify(2), pause=self.pause), 3)
        self.assertEqual(len(self.events), 3)
        self.assertEqual(len(self.pauses), 2)
        self.assertIn('Another process initialises the database',
                      logs.output[0])

    def test_not_forever(self):
        with self.assertLogs('lovely.remotetask.app'), \
                self.assertRaises(ConflictError):
            database.announce(object(), self.notify(9), attempts=3,
                              pause=self.pause)
        self.assertEqual(len(self.events), 3)

    def test_other_errors_are_not_repeated(self):
        def notify(event):
            self.events.append(event)
            raise ValueError()
        with self.assertRaises(ValueError):
            database.announce(object(), notify, pause=self.pause)
        self.assertEqual(len(self.events), 1)


class PasteTests(unittest.TestCase):

    def test_app_factory(self):
        from lovely.remotetask.app import wsgi
        with mock.patch.object(wsgi, 'make_app') as make_app:
            wsgi.app_factory({'here': '/srv/rt'}, config_file='zope.conf')
            make_app.assert_called_once_with('/srv/rt/zope.conf')
            make_app.reset_mock()
            wsgi.app_factory({})
            make_app.assert_called_once_with(None)


class CredentialsHeaderTests(unittest.TestCase):

    def test_readable(self):
        from lovely.remotetask.app.guards import readable
        self.assertTrue(readable(''))
        self.assertTrue(readable('Bearer xyz'))
        self.assertTrue(readable('Basic YTpi'))
        self.assertTrue(readable('basic   YTpi'))
        self.assertFalse(readable('Basic a:b'))
        self.assertFalse(readable('Basic Zm9v'))  # foo: no colon
        self.assertFalse(readable('Basic \u20ac'))

    def test_middleware(self):
        from lovely.remotetask.app.guards import RejectMalformedCredentials
        calls = []

        def app(environ, start_response):
            calls.append(environ)
            return [b'ok']

        wrapped = RejectMalformedCredentials(app)
        self.assertEqual(wrapped({}, None), [b'ok'])
        responses = []
        body = wrapped({'HTTP_AUTHORIZATION': 'Basic x'},
                       lambda *args: responses.append(args))
        self.assertEqual(len(calls), 1)
        self.assertEqual(responses[0][0], '400 Bad Request')
        self.assertIn(b'malformed Authorization', b''.join(body))


class SignalTests(unittest.TestCase):

    def test_first_signal_stops_second_one_forces(self):
        stops = []
        before = signal.getsignal(signal.SIGTERM)
        with main.Signals(lambda: stops.append(1)) as signals:
            with self.assertLogs('lovely.remotetask.app') as logs:
                # Python runs the handler in this thread right away.
                os.kill(os.getpid(), signal.SIGTERM)
            self.assertEqual(stops, [1])
            self.assertEqual(signals.received, 'SIGTERM')
            self.assertIn('SIGTERM received: stopping', logs.output[0])
            with mock.patch('os._exit') as exit_, \
                    mock.patch('logging.shutdown'), \
                    self.assertLogs('lovely.remotetask.app', 'WARNING'):
                os.kill(os.getpid(), signal.SIGINT)
            exit_.assert_called_once_with(1)
            self.assertEqual(stops, [1])
        self.assertIs(signal.getsignal(signal.SIGTERM), before)

    def test_stopping_makes_sigint_force(self):
        with main.Signals(lambda: self.fail('not stopping')) as signals:
            signals.stopping()
            with mock.patch('os._exit') as exit_, \
                    mock.patch('logging.shutdown'), \
                    self.assertLogs('lovely.remotetask.app', 'WARNING'):
                os.kill(os.getpid(), signal.SIGINT)
            exit_.assert_called_once_with(1)

    def test_a_second_sigterm_keeps_stopping_cleanly(self):
        # Issue 9: `make run` stopped with its process group got two
        # SIGTERMs, and the second one ended the server at once, leaving
        # an unclean Data.fs index.
        stops = []
        with main.Signals(lambda: stops.append(1)) as signals:
            with self.assertLogs('lovely.remotetask.app'):
                os.kill(os.getpid(), signal.SIGTERM)
            with mock.patch('os._exit') as exit_, \
                    self.assertLogs('lovely.remotetask.app') as logs:
                os.kill(os.getpid(), signal.SIGTERM)
                signals.stopping()
                os.kill(os.getpid(), signal.SIGTERM)
            exit_.assert_not_called()
            self.assertEqual(stops, [1])
            self.assertIn('still stopping cleanly', logs.output[0])
