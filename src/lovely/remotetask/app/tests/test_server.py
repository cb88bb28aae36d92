"""End to end: ``remotetask serve`` and ``remotetask worker`` as processes.

Each test starts its processes in a temporary directory, waits for them
with a bounded deadline (polling, never a fixed sleep), and stops only
the processes it started, by their process id.
"""
import base64
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import textwrap
import time
import unittest
import urllib.error
import urllib.request
import xmlrpc.client

from lovely.remotetask.tests.faultsupport import waitFor


#: The longest a process may take to start or to stop, in seconds.
STARTUP = 120.0
SHUTDOWN = 60.0
#: The longest a job may take to complete.
COMPLETION = 60.0


def environment(**changes):
    env = dict(os.environ)
    env.pop('REMOTETASK_ADMIN', None)
    env.pop('REMOTETASK_CONFIG', None)
    env['PYTHONUNBUFFERED'] = '1'
    env.update(changes)
    return env


class Remotetask:
    """A ``remotetask`` process in ``cwd``; its output goes to a file."""

    def __init__(self, cwd, *args, env=None, name='remotetask'):
        self.outfile = os.path.join(cwd, f'{name}.out')
        with open(self.outfile, 'wb') as out:
            self.process = subprocess.Popen(
                [sys.executable, '-m', 'lovely.remotetask.app', *args],
                cwd=cwd, stdout=out, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, env=env or environment())
        self.pid = self.process.pid

    def output(self):
        with open(self.outfile, encoding='utf-8', errors='replace') as f:
            return f.read()

    def waitFor(self, pattern, timeout=STARTUP):
        """The first match of ``pattern`` in the output."""
        def found():
            match = re.search(pattern, self.output())
            if match is None and self.process.poll() is not None:
                raise AssertionError(
                    f'remotetask exited with {self.process.returncode} '
                    f'before printing {pattern!r}:\n{self.output()}')
            return match
        return waitFor(found, timeout,
                       message=f'{pattern!r} in\n{self.output()}')

    def stop(self, signum=signal.SIGTERM, timeout=SHUTDOWN):
        """Send ``signum`` and return the exit code."""
        if self.process.poll() is None:
            os.kill(self.pid, signum)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(
                f'remotetask did not stop within {timeout}s:\n'
                f'{self.output()}')

    def kill(self):
        if self.process.poll() is None:
            os.kill(self.pid, signal.SIGKILL)
            self.process.wait(SHUTDOWN)


def request(url, credentials=None, data=None, headers=None):
    """(status, body, headers) of a request; errors are answers too."""
    req = urllib.request.Request(url, data=data, headers=headers or {})
    if credentials:
        token = base64.b64encode(credentials.encode()).decode()
        req.add_header('Authorization', f'Basic {token}')
    try:
        with urllib.request.urlopen(req, timeout=30) as response:
            return response.status, response.read(), response.headers
    except urllib.error.HTTPError as e:
        return e.code, e.read(), e.headers


SCRIPT = textwrap.dedent('''
    import sys
    import transaction
    from lovely.remotetask.app import instance
    from lovely.remotetask.app.database import open_database
    from lovely.remotetask.service import TaskService

    instance.make()
    db = open_database('var/zope.conf', autostart=False)
    root = db.open().root()['Application']
    root['tasks'] = service = TaskService()
    ids = [service.add('echo', {'n': n}) for n in range(int(sys.argv[1]))]
    transaction.commit()
    print('JOBS', *ids)
    db.close()
''')


def makeInstance(directory, jobs):
    """Create var/ with a task service ``tasks`` holding ``jobs`` echo jobs
    in the root folder, as a script run by the user would; return the job
    ids."""
    created = subprocess.run(
        [sys.executable, '-c', SCRIPT, str(jobs)], cwd=directory,
        env=environment(), capture_output=True, text=True, timeout=STARTUP)
    if created.returncode:
        raise AssertionError(created.stdout + created.stderr)
    [line] = [line for line in created.stdout.splitlines()
              if line.startswith('JOBS')]
    return [int(i) for i in line.split()[1:]]


def addService(url, credentials, name):
    """Add a task service ``name`` to the root folder, as the ZMI does."""
    add = (f'{url}/@@+/action.html?type_name=BrowserAdd__'
           f'lovely.remotetask.service.TaskService&id={name}')
    status = request(add, credentials,
                     headers={'Sec-Fetch-Site': 'same-origin'})[0]
    if status != 200:
        raise AssertionError(f'adding {name}: {status}')


def serviceURL(url, credentials=None, service='tasks'):
    """The XML-RPC address of a service, with credentials."""
    host = url[len('http://'):]
    if credentials:
        host = f'{credentials}@{host}'
    return f'http://{host}/{service}/'


class ServerLayer:
    """A ``remotetask serve`` started the way a newcomer starts it.

    No REMOTETASK_ADMIN: the credentials are generated on first start.
    """

    __name__ = 'ServerLayer'
    __bases__ = ()

    @classmethod
    def setUp(cls):
        cls.tmp = tempfile.TemporaryDirectory(prefix='remotetask-')
        cls.dir = cls.tmp.name
        cls.server = Remotetask(cls.dir, 'serve', '--host', '127.0.0.1',
                                '--port', '0')
        match = cls.server.waitFor(r'Serving on (http://127\.0\.0\.1:\d+)/')
        cls.url = match.group(1)
        with open(os.path.join(cls.dir, 'var', 'admin-credentials')) as f:
            cls.admin = [line.strip() for line in f
                         if not line.startswith('#')][0]

    @classmethod
    def tearDown(cls):
        try:
            cls.server.stop()
        finally:
            cls.server.kill()
            cls.tmp.cleanup()


class ServeTests(unittest.TestCase):

    layer = ServerLayer

    def setUp(self):
        self.url = ServerLayer.url
        self.admin = ServerLayer.admin
        self.dir = ServerLayer.dir

    def test_first_start_creates_the_instance(self):
        output = ServerLayer.server.output()
        self.assertIn('Created var/zope.conf', output)
        self.assertIn('Created var/site.zcml', output)
        var = os.path.join(self.dir, 'var')
        self.assertTrue(os.path.isfile(os.path.join(var, 'Data.fs')))
        self.assertEqual(stat.S_IMODE(os.stat(var).st_mode), 0o700)
        # Issue 9: they were 0644, protected by var/ alone.
        for name in os.listdir(var):
            self.assertEqual(
                stat.S_IMODE(os.stat(os.path.join(var, name)).st_mode),
                0o600, name)
        self.assertIn('Data.fs.lock', os.listdir(var))

    def test_generated_credentials(self):
        path = os.path.join(self.dir, 'var', 'admin-credentials')
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o600)
        login, password = self.admin.split(':', 1)
        self.assertEqual(login, 'admin')
        # Issue 9: the output is the log's stream: where the password
        # is, never the password.
        output = ServerLayer.server.output()
        self.assertNotIn(password, output)
        self.assertIn("Administrator: 'admin', password generated now and "
                      "stored in var/admin-credentials (read it with: cat "
                      "var/admin-credentials", output)

    def test_anonymous_gets_401(self):
        for path in ['/manage', '/', '/@@contents.html']:
            status, body, headers = request(self.url + path)
            self.assertEqual(status, 401, path)
            self.assertIn('basic', headers.get('WWW-Authenticate', '').lower())

    def test_wrong_password_gets_401(self):
        login = self.admin.split(':')[0]
        status, body, headers = request(self.url + '/manage',
                                        f'{login}:wrong')
        self.assertEqual(status, 401)

    def test_malformed_credentials_get_400(self):
        not_utf8 = 'Basic ' + base64.b64encode(b'\xff:pw').decode()
        for header in ['Basic admin:pw', 'Basic Zm9v', 'Basic ****',
                       not_utf8]:
            status, body, headers = request(
                self.url + '/manage', headers={'Authorization': header})
            self.assertEqual(status, 400, header)
        self.assertNotIn('binascii', ServerLayer.server.output())

    def test_security_headers(self):
        status, body, headers = request(self.url + '/manage', self.admin)
        self.assertEqual(status, 200)
        self.assertEqual(headers['X-Frame-Options'], 'DENY')
        policy = headers['Content-Security-Policy']
        self.assertIn("frame-ancestors 'none'", policy)
        self.assertIn("script-src 'self';", policy)
        self.assertEqual(headers['X-Content-Type-Options'], 'nosniff')
        self.assertEqual(headers['Cache-Control'], 'no-store')
        status, body, headers = request(self.url + '/manage')
        self.assertEqual(status, 401)
        self.assertEqual(headers['X-Frame-Options'], 'DENY')
        self.assertIn("script-src 'self';",
                      headers['Content-Security-Policy'])

    def test_requests_of_other_sites_are_refused(self):
        # The ZMI's folder contents delete on GET: nothing may come
        # through from another site, with the administrator's password
        # that the browser sends along.
        delete = '/@@contents.html?ids:list=x&container_delete_button=1'
        for path, data, headers in (
                ('/@@contents.html', b'container_delete_button=1',
                 {'Origin': 'http://evil.example'}),
                ('/@@contents.html', b'container_delete_button=1',
                 {'Sec-Fetch-Site': 'cross-site'}),
                (delete, None, {'Sec-Fetch-Site': 'cross-site',
                                'Sec-Fetch-Mode': 'navigate'}),
                (delete, None, {'Referer': 'http://evil.example/'})):
            status, body, answer = request(self.url + path, self.admin,
                                           data=data, headers=headers)
            self.assertEqual(status, 403, (path, headers))
        self.assertIn('Refused a cross-origin',
                      ServerLayer.server.output())
        status, body, answer = request(
            self.url + '/manage', self.admin,
            headers={'Sec-Fetch-Site': 'cross-site',
                     'Sec-Fetch-Mode': 'navigate'})
        self.assertEqual(status, 200)

    def addService(self, name):
        addService(self.url, self.admin, name)

    def test_bad_xmlrpc_leaves_no_traceback_in_the_log(self):
        self.addService('quiet')
        url = serviceURL(self.url, service='quiet')
        before = ServerLayer.server.output().count('Traceback')
        with xmlrpc.client.ServerProxy(
                serviceURL(self.url, self.admin, 'quiet')) as proxy:
            for call, code in ((lambda: proxy.add('nosuchtask'), 1),
                               (lambda: proxy.nosuch(), -32601),
                               (lambda: proxy.system.nosuch(), -32601),
                               (lambda: proxy.getStatus(1, 2), -32602)):
                with self.assertRaises(xmlrpc.client.Fault) as caught:
                    call()
                self.assertEqual(caught.exception.faultCode, code)
        status, body, headers = request(
            url, self.admin, data=b'<methodCall><methodName>add',
            headers={'Content-Type': 'text/xml'})
        with self.assertRaises(xmlrpc.client.Fault) as caught:
            xmlrpc.client.loads(body)
        self.assertEqual(caught.exception.faultCode, -32700)
        self.assertEqual(ServerLayer.server.output().count('Traceback'),
                         before)

    def test_not_found_is_not_an_error(self):
        before = ServerLayer.server.output().count('Traceback')
        for path in ('/nosuchpage', '/@@nosuchview.html'):
            status, body, headers = request(self.url + path, self.admin)
            self.assertEqual(status, 404)
        self.assertEqual(ServerLayer.server.output().count('Traceback'),
                         before)

    def test_admin_gets_the_zmi(self):
        status, body, headers = request(self.url + '/manage', self.admin)
        self.assertEqual(status, 200)
        self.assertIn(b'zope3logo.gif', body)  # the Rotterdam skin
        self.assertIn(b'Administrator', body)  # logged in
        self.assertIn(b'Remote Task Service', body)  # this package

    def test_xmlrpc_job_added_to_a_service_added_in_the_zmi_completes(self):
        from zope.testbrowser.browser import Browser

        browser = Browser()
        # No robots.txt check (it answers 401, like everything else).
        browser.testapp.restricted = True
        browser.addHeader(
            'Authorization',
            'Basic ' + base64.b64encode(self.admin.encode()).decode())
        browser.open(self.url + '/manage')
        browser.getLink('Remote Task Service').click()
        browser.getControl(name='new_value').value = 'tasks'
        browser.getControl('Apply').click()

        with xmlrpc.client.ServerProxy(serviceURL(self.url)) as proxy:
            with self.assertRaises(xmlrpc.client.ProtocolError) as e:
                proxy.add('echo', {'foo': 'bar'})
        self.assertEqual(e.exception.errcode, 401)

        with xmlrpc.client.ServerProxy(
                serviceURL(self.url, self.admin)) as proxy:
            jobid = proxy.add('echo', {'foo': 'bar'})
            self.assertIsInstance(jobid, int)
            # Nobody clicks "Start Processing": autostart (*@*) did it.
            waitFor(lambda: proxy.getStatus(jobid) == 'completed',
                    COMPLETION, message=f'job {jobid} completed')
            self.assertEqual(proxy.getResult(jobid), {'foo': 'bar'})


class ShutdownTests(unittest.TestCase):

    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory(prefix='remotetask-')
        self.dir = self.tmp.name
        self.processes = []

    def tearDown(self):
        for process in self.processes:
            process.kill()
        self.tmp.cleanup()

    def start(self, *args, **kw):
        process = Remotetask(self.dir, *args, **kw)
        self.processes.append(process)
        return process

    def test_sigterm_stops_processing_and_closes_the_database(self):
        [jobid] = makeInstance(self.dir, 1)
        env = environment(REMOTETASK_ADMIN='boss:Very-Secret')
        server = self.start('serve', '--port', '0', env=env)
        url = server.waitFor(r'Serving on (http://127\.0\.0\.1:\d+)/')[1]
        self.assertIn("Administrator: 'boss' (password from "
                      "REMOTETASK_ADMIN)", server.output())
        self.assertNotIn('Very-Secret', server.output())
        self.assertFalse(os.path.exists(
            os.path.join(self.dir, 'var', 'admin-credentials')))
        self.assertEqual(request(url + '/manage', 'boss:Very-Secret')[0],
                         200)
        self.assertEqual(request(url + '/manage', 'admin:')[0], 401)
        # The service made by the script started with the server.
        self.assertIn('autostart: started processing @tasks',
                      server.output())
        with xmlrpc.client.ServerProxy(
                serviceURL(url, 'boss:Very-Secret')) as proxy:
            waitFor(lambda: proxy.getStatus(jobid) == 'completed',
                    COMPLETION, message=f'job {jobid} completed')

        # A FileStorage serves one process: a worker is told so.
        worker = self.start('worker', name='worker')
        self.assertEqual(worker.process.wait(STARTUP), 2)
        self.assertIn('the database is in use by another process',
                      worker.output())

        index = os.path.join(self.dir, 'var', 'Data.fs.index')
        signalled = time.time()
        # A second SIGTERM while stopping (the process group of `make
        # run` gets two) keeps stopping cleanly (issue 9).
        os.kill(server.pid, signal.SIGTERM)
        server.waitFor('SIGTERM received: stopping', SHUTDOWN)
        self.assertEqual(server.stop(signal.SIGTERM), 0, server.output())
        output = server.output()
        self.assertIn('Stopped processing remotetasks.', output)
        self.assertIn('Closed the database FileStorage var/Data.fs', output)
        # FileStorage writes its index when it is closed.
        self.assertGreaterEqual(os.stat(index).st_mtime, signalled - 1)
        self.assertEqual(stat.S_IMODE(os.stat(index).st_mode), 0o600)

        # Ctrl-C stops it the same way.  Nothing was lost.
        server = self.start('serve', '--port', '0', env=env,
                            name='second')
        url = server.waitFor(r'Serving on (http://127\.0\.0\.1:\d+)/')[1]
        self.assertNotIn('Created var/', server.output())
        with xmlrpc.client.ServerProxy(
                serviceURL(url, 'boss:Very-Secret')) as proxy:
            self.assertEqual(proxy.getStatus(jobid), 'completed')
        self.assertEqual(server.stop(signal.SIGINT), 0, server.output())
        self.assertIn('SIGINT received: stopping', server.output())
        self.assertIn('Closed the database', server.output())

    def test_administrator_login_taken(self):
        makeInstance(self.dir, 0)
        site = os.path.join(self.dir, 'var', 'site.zcml')
        with open(site) as f:
            text = f.read()
        with open(site, 'w') as f:
            f.write(text.replace('</configure>', '''
                <principal id="myapp.someone" title="Someone" login="admin"
                    password_manager="SSHA" password="{SSHA}x" />
                </configure>'''))
        server = self.start('serve', '--port', '0')
        self.assertEqual(server.process.wait(STARTUP), 2, server.output())
        output = server.output()
        self.assertIn("the administrator cannot be registered: "
                      "DuplicateLogin admin", output)
        self.assertIn('Closed the database FileStorage var/Data.fs', output)

    def test_bad_admin_variable(self):
        env = environment(REMOTETASK_ADMIN='no-colon')
        server = self.start('serve', '--port', '0', env=env)
        self.assertEqual(server.process.wait(STARTUP), 2)
        self.assertIn('REMOTETASK_ADMIN: expected login:password',
                      server.output())
        self.assertFalse(os.path.exists(
            os.path.join(self.dir, 'var', 'Data.fs')))

    def test_port_in_use(self):
        import socket
        with socket.socket() as sock:
            sock.bind(('127.0.0.1', 0))
            sock.listen()
            port = sock.getsockname()[1]
            server = self.start('serve', '--port', str(port))
            self.assertEqual(server.process.wait(STARTUP), 1)
        self.assertIn('Cannot listen on 127.0.0.1:%d' % port,
                      server.output())
        self.assertIn('Closed the database', server.output())


class WorkerTests(unittest.TestCase):

    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory(prefix='remotetask-')
        self.dir = self.tmp.name
        self.worker = None

    def tearDown(self):
        if self.worker is not None:
            self.worker.kill()
        self.tmp.cleanup()

    def statuses(self, ids):
        """The status of each job, read from the worker's FileStorage."""
        import ZODB
        from ZODB.FileStorage import FileStorage
        storage = FileStorage(os.path.join(self.dir, 'var', 'Data.fs'),
                              read_only=True)
        db = ZODB.DB(storage)
        try:
            conn = db.open()
            service = conn.root()['Application']['tasks']
            return {jobid: service.getStatus(jobid) for jobid in ids}
        finally:
            db.close()

    def test_worker_processes_the_jobs(self):
        ids = makeInstance(self.dir, 5)
        self.assertEqual(set(self.statuses(ids).values()), {'queued'})

        self.worker = Remotetask(self.dir, 'worker', '--threads', '2')
        self.worker.waitFor(
            r'Worker connected to FileStorage var/Data\.fs')
        self.worker.waitFor(r'processing @tasks with 2 thread')
        waitFor(lambda: set(self.statuses(ids).values()) == {'completed'},
                COMPLETION, message='all jobs completed')
        self.assertEqual(self.worker.stop(signal.SIGTERM), 0,
                         self.worker.output())
        output = self.worker.output()
        self.assertIn('Closed the database FileStorage var/Data.fs', output)
        # The autostart of zope.conf is not the worker's business.
        self.assertNotIn('autostart: started processing', output)

    def test_worker_needs_a_configuration(self):
        self.worker = Remotetask(self.dir, 'worker')
        self.assertEqual(self.worker.process.wait(STARTUP), 2)
        self.assertIn("No configuration file 'var/zope.conf'",
                      self.worker.output())
        self.assertFalse(os.path.exists(os.path.join(self.dir, 'var')))


ZEO_SCRIPT = textwrap.dedent('''
    import re
    import sys
    from lovely.remotetask.app import instance
    from lovely.remotetask.app.database import open_database

    instance.make()
    with open('var/zope.conf') as f:
        text = f.read()
    text = '%import ZEO\\n' + re.sub(
        r'<zodb>\\s*cache-size \\d+\\s*<filestorage>.*?</filestorage>\\s*'
        r'</zodb>', '<zodb>\\n  <zeoclient>\\n    server ' + sys.argv[1]
        + '\\n  </zeoclient>\\n</zodb>', text, count=1, flags=re.S)
    with open('var/zope.conf', 'w') as f:
        f.write(text)
    db = open_database('var/zope.conf', autostart=False)
    print('GUARDED', db.storage._remotetask_oids_guarded)
    db.close()
''')


class ZEOClientTests(unittest.TestCase):
    """The server's database as a ZEO client."""

    def test_prefetched_oids_are_guarded(self):
        # Web requests add jobs (new objects) too: the server's client
        # drops its prefetched oids when the ZEO server goes away or
        # comes back (see storagefaults.py), as a worker's does.
        import ZEO
        directory = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, directory, True)
        address, stop = ZEO.server(
            path=os.path.join(directory, 'zeo.fs'))
        self.addCleanup(stop)
        done = subprocess.run(
            [sys.executable, '-c', ZEO_SCRIPT, '%s:%s' % address],
            cwd=directory, env=environment(), capture_output=True,
            text=True, timeout=STARTUP)
        self.assertEqual(done.returncode, 0, done.stdout + done.stderr)
        self.assertIn('GUARDED True', done.stdout)
