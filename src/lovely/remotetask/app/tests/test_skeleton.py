"""The generated zope.conf and site.zcml do what their comments say."""
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import textwrap

from lovely.remotetask.app import instance
from lovely.remotetask.app import logformat
from lovely.remotetask.app.tests import InTemporaryDirectory
from lovely.remotetask.app.tests.test_instance import loadConfig
from lovely.remotetask.app.tests.test_server import environment


#: Loads zope.conf like a worker and runs the task ``hello`` (with
#: ``python -P``: like the ``remotetask`` script, the current directory
#: is not on the path).
RUN_HELLO = '''
import zope.component
from lovely.remotetask.app.database import configure
from lovely.remotetask.interfaces import ITask
configure('var/zope.conf', autostart=False)
task = zope.component.getUtility(ITask, 'hello')
print(task(None, 1, {'name': 'you'}))
'''


def uncomment(text, line):
    """``text`` with the commented ``line`` (a regex) uncommented."""
    new, count = re.subn(r'^#\s?(' + line + r')$', r'\1', text,
                         flags=re.M)
    assert count == 1, (line, count)
    return new


def uncommentBlock(text, start, end):
    """Uncomment the lines from the one matching ``start`` to ``end``."""
    lines = text.splitlines()
    first = next(i for i, line in enumerate(lines)
                 if re.match(r'#\s?' + start + '$', line))
    last = next(i for i in range(first, len(lines))
                if re.match(r'#\s?' + end + '$', lines[i]))
    for i in range(first, last + 1):
        lines[i] = re.sub(r'^# ?', '', lines[i])
    return '\n'.join(lines) + '\n'


class ExampleTaskTests(InTemporaryDirectory):
    """README, zope.conf and site.zcml: a task module of your own."""

    def setUp(self):
        super().setUp()
        instance.make()
        shutil.copy('var/mytasks.py.example', 'mytasks.py')
        with open('var/site.zcml') as f:
            zcml = f.read()
        # The example utility, out of its comment.
        zcml = zcml.replace('''  <utility
      component="mytasks.hello"''', '''  -->
  <utility
      component="mytasks.hello"''').replace('''      name="hello"
      />
''', '''      name="hello"
      />
  <!--
''')
        with open('var/site.zcml', 'w') as f:
            f.write(zcml)

    def run_hello(self):
        return subprocess.run(
            [sys.executable, '-P', '-c', RUN_HELLO], capture_output=True,
            text=True, env=environment(), timeout=120)

    def test_without_path_the_module_is_not_found(self):
        result = self.run_hello()
        self.assertNotEqual(result.returncode, 0)
        self.assertIn("ImportError: Couldn't import mytasks", result.stderr)

    def test_with_path_the_example_task_runs(self):
        with open('var/zope.conf') as f:
            text = f.read()
        with open('var/zope.conf', 'w') as f:
            f.write(uncomment(text, r'path \.'))
        result = self.run_hello()
        self.assertEqual(result.returncode, 0, result.stderr[-3000:])
        self.assertEqual(result.stdout.strip().splitlines()[-1],
                         "{'greeting': 'Hello, you!'}")

    def test_a_script_adds_jobs_of_the_tasks_of_site_zcml(self):
        # docs/scaleout.rst, "Adding jobs from a script".
        from lovely.remotetask.app.tests.test_server import makeInstance
        script = os.path.join(os.path.dirname(__file__), *[os.pardir] * 5,
                              'docs', 'addjobs.py')
        if not os.path.exists(script):  # pragma: no cover
            self.skipTest('docs/ is not installed')
        with open(script) as f:
            code = f.read()
        with open(os.path.join(os.path.dirname(script), 'scaleout.rst')) as f:
            # The documentation shows the script as it is.
            self.assertIn(textwrap.indent(code, '    ', str.strip), f.read())
        with open('var/zope.conf') as f:
            text = f.read()
        with open('var/zope.conf', 'w') as f:
            f.write(uncomment(text, r'path \.'))
        makeInstance('.', 0)   # the service ``tasks``
        result = subprocess.run(
            [sys.executable, '-P', script, 'var/zope.conf', 'hello', '3'],
            capture_output=True, text=True, env=environment(), timeout=120)
        self.assertEqual(result.returncode, 0, result.stderr[-3000:])
        line = result.stdout.strip().splitlines()[-1]
        self.assertTrue(line.startswith('Added 3 hello job(s): '), line)
        ids = [int(i) for i in line.split(': ')[1].split()]
        import ZODB
        from ZODB.FileStorage import FileStorage
        db = ZODB.DB(FileStorage('var/Data.fs', read_only=True))
        try:
            service = db.open().root()['Application']['tasks']
            self.assertEqual(
                [(service.getStatus(i), service.jobs[i].task) for i in ids],
                [('queued', 'hello')] * 3)
        finally:
            db.close()
        # A task that site.zcml does not register is refused.
        result = subprocess.run(
            [sys.executable, '-P', script, 'var/zope.conf', 'nosuch'],
            capture_output=True, text=True, env=environment(), timeout=120)
        self.assertNotEqual(result.returncode, 0)
        self.assertIn('UnknownTask', result.stderr)


class DatabaseExampleTests(InTemporaryDirectory):
    """The examples of zope.conf, uncommented, are what the scale-out
    documentation says."""

    def setUp(self):
        super().setUp()
        instance.make()
        with open('var/zope.conf') as f:
            text = f.read()
        # Without the FileStorage section: one <zodb> at a time.
        self.text = re.sub(r'^<zodb>.*?^</zodb>\n', '', text, count=1,
                           flags=re.M | re.S)

    def load(self, text):
        with open('var/zope.conf', 'w') as f:
            f.write(text)
        [database] = loadConfig('var/zope.conf').databases
        return database.config

    def test_zeo_example_syncs_with_the_server(self):
        config = self.load(uncommentBlock(self.text, '%import ZEO',
                                          '</zodb>'))
        storage = config.storage.config
        self.assertTrue(storage.server_sync)
        self.assertEqual(storage.server[0].address, ('127.0.0.1', 8100))

    def test_relstorage_example_keeps_no_history(self):
        try:
            import relstorage  # noqa: F401
        except ImportError:  # pragma: no cover
            self.skipTest('RelStorage is not installed')
        config = self.load(uncommentBlock(self.text, '%import relstorage',
                                          '</zodb>'))
        self.assertFalse(config.storage.config.keep_history)


class LogFormatTests(InTemporaryDirectory):

    def record(self, message='hello %s', args=('you',), **extra):
        record = logging.LogRecord('lovely.remotetask', logging.INFO,
                                   __file__, 1, message, args, None)
        record.created = 1700000000.0425
        record.msecs = 42.5
        record.__dict__.update(extra)
        return record

    def test_lines_have_milliseconds(self):
        instance.make()
        with open('var/zope.conf') as f:
            fmt = re.search(r'^\s*format (.*)$', f.read(), re.M).group(1)
        formatter = logging.Formatter(fmt, '%Y-%m-%dT%H:%M:%S')
        line = formatter.format(self.record())
        self.assertRegex(
            line, r'^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.042 INFO '
                  r'\[lovely\.remotetask\] hello you$')

    def test_json_lines(self):
        formatter = logformat.JSONFormatter('ignored %(message)s')
        data = json.loads(formatter.format(self.record(job=7, task='echo')))
        self.assertEqual(data, {
            'time': '2023-11-14T22:13:20.042Z', 'level': 'INFO',
            'logger': 'lovely.remotetask', 'message': 'hello you',
            'job': 7, 'task': 'echo'})

    def test_json_one_line_with_the_traceback(self):
        formatter = logformat.JSONFormatter()
        try:
            raise ValueError('bad\nthing')
        except ValueError:
            record = self.record('failed', ())
            record.exc_info = sys.exc_info()
        line = formatter.format(record)
        self.assertEqual(len(line.splitlines()), 1)
        self.assertIn('ValueError: bad', json.loads(line)['exception'])

    def test_json_from_zope_conf(self):
        instance.make()
        with open('var/zope.conf') as f:
            text = f.read()
        text = re.sub(r'^(\s*)format .*$',
                      r'\1formatter lovely.remotetask.app.logformat.'
                      r'JSONFormatter', text, count=1, flags=re.M)
        with open('var/zope.conf', 'w') as f:
            f.write(text)
        options = loadConfig('var/zope.conf')
        logger = options.eventlog()
        try:
            [handler] = [h for h in logger.handlers
                         if isinstance(h.formatter, logformat.JSONFormatter)]
        finally:
            for h in list(logger.handlers):
                logger.removeHandler(h)
        self.assertIsInstance(handler.formatter, logformat.JSONFormatter)

    def test_job_and_task_of_the_running_job(self):
        from lovely.remotetask import interaction
        from zope.security import management
        participation = interaction.JobParticipation(
            interaction.nobody, None, 12)
        participation.task = 'resize'
        management.newInteraction(participation)
        try:
            data = json.loads(
                logformat.JSONFormatter().format(self.record()))
        finally:
            management.endInteraction()
        self.assertEqual((data['job'], data['task']), (12, 'resize'))
        self.assertNotIn('worker', data)


def test_suite():
    import unittest
    loader = unittest.defaultTestLoader
    return unittest.TestSuite([
        loader.loadTestsFromTestCase(case) for case in (
            ExampleTaskTests, DatabaseExampleTests, LogFormatTests)])
