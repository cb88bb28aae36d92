"""The command line tool (app/cli/README.rst), run as processes, and its
edge cases."""
import doctest
import json
import os
import subprocess
import sys
import tempfile
import unittest

from lovely.remotetask.app.tests.test_server import environment


TIMEOUT = 120.0
FLAGS = (doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
         | doctest.REPORT_NDIFF)


def remotetask(directory, *args):
    """Run ``remotetask ARGS`` in ``directory``; the CompletedProcess."""
    return subprocess.run(
        [sys.executable, '-m', 'lovely.remotetask.app', *args],
        cwd=directory, env=environment(), capture_output=True, text=True,
        stdin=subprocess.DEVNULL, timeout=TIMEOUT)


def setUp(test):
    test.tmp = tempfile.TemporaryDirectory(prefix='remotetask-cli-')
    directory = test.tmp.name
    test.cwd = os.getcwd()
    subprocess.run([sys.executable, '-c',
                    'from lovely.remotetask.app import instance; '
                    'instance.make()'], cwd=directory, check=True,
                   env=environment(), timeout=TIMEOUT)
    os.chdir(directory)

    def run(*args, quiet=False):
        """Print what the command printed (and its exit status unless 0);
        with ``quiet``, return its standard output instead."""
        done = remotetask(directory, *args)
        if quiet:
            if done.returncode:
                raise AssertionError(done.stdout + done.stderr)
            return done.stdout
        text = done.stdout + done.stderr
        for jobid, name in names.items():
            text = text.replace(str(jobid), name)
        print(text.rstrip('\n') if text.strip() else '', end='')
        if done.returncode:
            print(f'\nexit status {done.returncode}')
        elif text.strip():
            print()
    names = {}
    test.globs.update(run=run, json=json, os=os, names=names)


def tearDown(test):
    os.chdir(test.cwd)
    test.tmp.cleanup()


class SettingTests(unittest.TestCase):

    def parse(self, text):
        from lovely.remotetask.app.cli.services import parseSetting
        return parseSetting(text)

    def test_values_are_converted_by_their_field(self):
        self.assertEqual(self.parse('maxRetries=7'), ('maxRetries', 7))
        self.assertEqual(self.parse(' retryDelay = 1.5 '),
                         ('retryDelay', 1.5))
        self.assertEqual(self.parse('maxDataSize=None'),
                         ('maxDataSize', None))

    def test_bad_values_are_refused(self):
        from lovely.remotetask.app.cli.session import CommandError
        for text, message in (
                ('maxRetries=-1', 'maxRetries=-1: Value is too small '
                                  '(int >= 0)'),
                ('maxRetries=many', 'maxRetries=many: Invalid int literal'),
                ('leaseTime=none', 'leaseTime must have a value'),
                ('maxRetries', "'maxRetries': expected NAME=VALUE"),
                ('jobs=1', "'jobs=1': expected NAME=VALUE")):
            with self.assertRaises(CommandError) as caught:
                self.parse(text)
            self.assertIn(message, str(caught.exception), text)


class WithSession(unittest.TestCase):
    """A database of the test's own (the commands' ``Session`` without
    zope.conf)."""

    def setUp(self):
        import transaction
        import ZODB
        import zope.component.testing
        from ZODB.DemoStorage import DemoStorage
        from zope.site.folder import rootFolder
        from lovely.remotetask.app.cli.session import Session
        zope.component.testing.setUp(self)
        self.addCleanup(zope.component.testing.tearDown, self)
        self.db = ZODB.DB(DemoStorage())
        self.addCleanup(self.db.close)
        self.tm = transaction.TransactionManager()
        conn = self.db.open(self.tm)
        self.addCleanup(conn.close)
        self.addCleanup(self.tm.abort)
        conn.root()['Application'] = rootFolder()
        self.session = Session.__new__(Session)
        self.session.connection = conn
        self.session.tm = self.tm


class ServiceLookupTests(WithSession):
    """Finding services and creating them in sites."""

    def test_no_service(self):
        from lovely.remotetask.app.cli.session import CommandError
        with self.assertRaisesRegex(CommandError, 'there is no task '
                                                  'service'):
            self.session.service()

    def test_one_several_and_by_path(self):
        import argparse
        import io
        from lovely.remotetask.app.cli import services
        from lovely.remotetask.app.cli.session import CommandError
        out = io.StringIO()
        services.create(self.session, argparse.Namespace(
            name='tasks', site=None), out)
        self.assertEqual(self.session.service().__name__, 'tasks')
        services.create(self.session, argparse.Namespace(
            name='tasks', site='site1/'), out)
        self.assertEqual(out.getvalue().splitlines(), [
            'Created the task service tasks',
            'Created the task service site1/tasks'])
        from zope.component.interfaces import ISite
        self.assertTrue(ISite.providedBy(self.session.root['site1']))
        with self.assertRaisesRegex(CommandError, r'several task services '
                                    r'\(site1/tasks, tasks\)'):
            self.session.service()
        self.assertIs(self.session.service('site1/tasks'),
                      self.session.root['site1']['tasks'])
        with self.assertRaisesRegex(CommandError, "nothing is called 'x'"):
            self.session.service('site1/x')
        with self.assertRaisesRegex(CommandError, 'is not a task service'):
            self.session.service('site1')


#: What whoever adds a job (or runs a task) may put into its data: a
#: terminal would clear the screen, move the cursor back over the line,
#: ring the bell, set the window title.
NASTY = 'x\x1b[2J\ry\x07\x9b1m\x1b]0;pwned\x07\u2028z'
ESCAPED = r'x\x1b[2J\ry\x07\x9b1m\x1b]0;pwned\x07\u2028z'


class EscapingTests(WithSession):
    """The commands print job data with control characters escaped;
    ``--json`` escapes them as JSON does."""

    def setUp(self):
        super().setUp()
        import zope.component
        from lovely.remotetask import task
        from lovely.remotetask.interfaces import ITask
        from lovely.remotetask.service import TaskService
        zope.component.provideUtility(task.echo, ITask, 'echo')
        self.session.root['tasks'] = self.service = TaskService()
        self.jobid = self.service.add('echo', {NASTY: NASTY})
        job = self.service.jobs[self.jobid]
        job.task = NASTY
        job.status = 'error'
        job.error = NASTY
        job.worker = NASTY
        job.addedBy = NASTY
        job.traceback = ('Traceback (most recent call last):\n'
                         '\tFile "x.py", line 1\n' + NASTY + '\n')
        self.tm.commit()

    def run_(self, func, **kw):
        import argparse
        import io
        out = io.StringIO()
        args = argparse.Namespace(**dict(dict(service=None, json=False),
                                         **kw))
        func(self.session, args, out)
        return out.getvalue()

    def assertNoControls(self, text):
        import re
        self.assertIsNone(
            re.search('[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029]',
                      text), ascii(text))

    def test_list(self):
        from lovely.remotetask.app.cli import jobs
        text = self.run_(jobs.list_, status=None, task=None, size=10,
                         reverse=False)
        self.assertNoControls(text)
        self.assertIn(r'x\x1b[2J\ry\x07', text)

    def test_show(self):
        from lovely.remotetask.app.cli import jobs
        text = self.run_(jobs.show, jobid=self.jobid)
        self.assertNoControls(text)
        for name in ('task', 'error', 'worker', 'addedBy'):
            self.assertIn(f'{name + ":":<13} {ESCAPED}\n', text)
        # The traceback keeps its lines and tabs.
        self.assertIn('Traceback (most recent call last):\n'
                      '\tFile "x.py", line 1\n' + ESCAPED + '\n', text)
        # The input is JSON, escaped as such.
        self.assertIn(json.dumps(NASTY), text)

    def test_lone_surrogates_are_escaped(self):
        # Data stored by Python code (the APIs refuse it): printed
        # escaped, so that a UTF-8 terminal can take the output.
        from lovely.remotetask.app.cli import jobs
        job = self.service.jobs[self.jobid]
        job.input = {'in\ud800': 'put\udfff'}
        job.uniqueKey = 'key\ud800'
        job.error = 'error\udfff'
        job.traceback = 'Traceback\n\tline\ud800\n'
        self.tm.commit()
        text = self.run_(jobs.show, jobid=self.jobid)
        text.encode('utf-8')
        self.assertIn('uniqueKey:    key\\ud800\n', text)
        self.assertIn('error:        error\\udfff\n', text)
        self.assertIn('\tline\\ud800\n', text)
        self.assertIn(json.dumps('put\udfff'), text)
        listed = self.run_(jobs.list_, status=None, task=None, size=10,
                           reverse=False)
        listed.encode('utf-8')

    def test_json_is_escaped_as_json(self):
        from lovely.remotetask.app.cli import jobs
        out = self.run_(jobs.show, jobid=self.jobid, json=True)
        self.assertNoControls(out)
        self.assertEqual(json.loads(out)['error'], NASTY)

    def test_workers(self):
        import argparse
        import io
        from lovely.remotetask.app.cli import watch

        class Service:
            def isPaused(self):
                return False

            def listWorkers(self):
                return [dict(id=NASTY, status=NASTY, age=1.0, done=2,
                             failed=0, running=[1])]

        class Session:
            def service(self, path):
                return Service()
        out = io.StringIO()
        watch.workers(Session(), argparse.Namespace(
            service=None, json=False), out)
        self.assertNoControls(out.getvalue())
        self.assertIn(ESCAPED, out.getvalue())

    def runner(self, command):
        """``cli.runner(command)`` without a database (a stand-in
        session), stdout a stream; its status and what went to stderr."""
        import argparse
        import contextlib
        import io
        from unittest import mock
        from lovely.remotetask.app import cli

        class Session:
            def __init__(self, *args):
                pass

            def __enter__(self):
                return self

            def __exit__(self, *args):
                pass
        err = io.StringIO()
        # A stream, not the test's own stdout: that is never silenced.
        with mock.patch.object(cli, 'Session', Session), \
                contextlib.redirect_stderr(err), \
                contextlib.redirect_stdout(io.StringIO()):
            status = cli.runner(command)(argparse.Namespace(
                config=None, verbose=False))
        return status, err.getvalue()

    def test_errors(self):
        from lovely.remotetask.app.cli.session import CommandError

        def fail(session, args, out):
            raise CommandError(NASTY)
        self.assertEqual(self.runner(fail), (2, f'remotetask: {ESCAPED}\n'))

    def test_a_reader_that_went_away_ends_it_quietly(self):
        # ``remotetask jobs show ID | head -1``: the pipe closes.
        def show(session, args, out):
            raise BrokenPipeError(32, 'Broken pipe')
        self.assertEqual(self.runner(show), (1, ''))


def test_suite():
    return unittest.TestSuite([
        doctest.DocFileSuite('../cli/README.rst', setUp=setUp,
                             tearDown=tearDown, optionflags=FLAGS),
        doctest.DocTestSuite('lovely.remotetask.app.cli.jobs',
                             optionflags=FLAGS),
        unittest.defaultTestLoader.loadTestsFromTestCase(SettingTests),
        unittest.defaultTestLoader.loadTestsFromTestCase(
            ServiceLookupTests),
        unittest.defaultTestLoader.loadTestsFromTestCase(EscapingTests),
    ])
