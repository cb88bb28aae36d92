"""docs/api.rst, run: every ``$`` command of it against a ``remotetask
serve`` of this test, compared with what the page says it prints.

A command is a line ``$ COMMAND`` in a literal block; the lines after it
(up to a blank line) are its output, compared as a doctest compares
(``...`` matches anything, white space is normalised).  The commands run
one after the other in bash, in one directory, with the variables that
one sets kept for the next (``JOB=$(...)``); ``API`` and ``AUTH`` point
at the server.  They need ``curl``, ``jq`` and ``python3``; the test is
skipped, saying which is missing, where they are not installed.
"""
import doctest
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import unittest

from lovely.remotetask.app.tests.test_server import Remotetask
from lovely.remotetask.app.tests.test_server import environment


HERE = os.path.dirname(os.path.abspath(__file__))
DOC = os.path.join(HERE, *[os.pardir] * 5, 'docs', 'api.rst')
ADMIN = 'admin:Api-Docs-Secret'
TOOLS = ('curl', 'jq', 'python3', 'bash')
#: The longest one command of the page may take.
COMMAND_TIMEOUT = 60.0
COMMAND = re.compile(r'^(?P<indent> +)\$ (?P<command>.*)$')


def toDoctest(text):
    """The page as a doctest: each ``$ COMMAND`` becomes a call of
    ``sh(COMMAND)``."""
    lines = []
    for line in text.splitlines():
        match = COMMAND.match(line)
        if match is None:
            lines.append(line)
        else:
            lines.append(f"{match['indent']}>>> sh({match['command']!r})")
    return '\n'.join(lines) + '\n'


class Shell:
    """Runs commands in bash, keeping the variables they set."""

    def __init__(self, directory, variables):
        self.directory = directory
        self.state = os.path.join(directory, '.state')
        with open(self.state, 'w') as f:
            for name, value in variables.items():
                f.write(f'export {name}={shlex.quote(value)}\n')

    def __call__(self, command):
        script = (f'set -a; . {shlex.quote(self.state)}; {command}\n'
                  f'status=$?; export -p > {shlex.quote(self.state)}.new; '
                  f'mv {shlex.quote(self.state)}.new '
                  f'{shlex.quote(self.state)}; exit $status')
        done = subprocess.run(
            ['bash', '-c', script], cwd=self.directory, env=environment(),
            capture_output=True, text=True, timeout=COMMAND_TIMEOUT)
        print((done.stdout + done.stderr).rstrip('\n') or '', end='')
        if done.stdout.strip() or done.stderr.strip():
            print()
        if done.returncode:
            print(f'exit status {done.returncode}')


class APIDocsLayer:
    """A ``remotetask serve`` with a task service ``tasks`` (made by
    ``remotetask service create``)."""

    __name__ = 'APIDocsLayer'
    __bases__ = ()

    @classmethod
    def setUp(cls):
        cls.tmp = tempfile.TemporaryDirectory(prefix='remotetask-api-')
        cls.dir = cls.tmp.name
        env = environment(REMOTETASK_ADMIN=ADMIN)
        created = subprocess.run(
            [sys.executable, '-c',
             'from lovely.remotetask.app import instance; instance.make()'],
            cwd=cls.dir, env=env, timeout=120, check=True)
        created = subprocess.run(
            [sys.executable, '-m', 'lovely.remotetask.app', 'service',
             'create', 'tasks'], cwd=cls.dir, env=env, timeout=120,
            capture_output=True, text=True)
        if created.returncode:
            raise AssertionError(created.stdout + created.stderr)
        cls.server = Remotetask(cls.dir, 'serve', '--host', '127.0.0.1',
                                '--port', '0', env=env)
        match = cls.server.waitFor(r'Serving on (http://127\.0\.0\.1:\d+)/')
        cls.url = match.group(1)

    @classmethod
    def tearDown(cls):
        try:
            cls.server.stop()
        finally:
            cls.server.kill()
            cls.tmp.cleanup()


class APIDocsTest(unittest.TestCase):

    layer = APIDocsLayer

    def test_the_examples_of_docs_api_rst(self):
        missing = [tool for tool in TOOLS if shutil.which(tool) is None]
        if missing:
            self.skipTest(f'docs/api.rst needs {", ".join(missing)} '
                          f'(apt-get install {" ".join(missing)})')
        if not os.path.exists(DOC):
            self.skipTest('docs/api.rst is not there (not a checkout)')
        with open(DOC, encoding='utf-8') as f:
            text = toDoctest(f.read())
        work = tempfile.mkdtemp(dir=APIDocsLayer.dir)
        sh = Shell(work, {'API': APIDocsLayer.url + '/tasks/@@api',
                          'AUTH': ADMIN})
        test = doctest.DocTestParser().get_doctest(
            text, {'sh': sh}, 'api.rst', DOC, 0)
        runner = doctest.DocTestRunner(optionflags=(
            doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
            | doctest.REPORT_NDIFF))
        output = []
        runner.run(test, out=output.append)
        self.assertFalse(output, ''.join(output) + '\nThe server said:\n'
                         + APIDocsLayer.server.output()[-3000:])
        self.assertGreater(len(test.examples), 20)
