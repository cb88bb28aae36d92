"""End to end: ``remotetask serve`` and ``remotetask worker`` as processes.

Each test starts its processes in a temporary directory, waits for them
with a bounded deadline (polling, never a fixed sleep), and stops only
the processes it started, by their process id.
"""
import base64
import os
import re
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
        add = (f'{self.url}/@@+/action.html?type_name=BrowserAdd__'
               f'lovely.remotetask.service.TaskService&id={name}')
        self.assertEqual(request(add, self.admin,
                                 headers={'Sec-Fetch-Site': 'same-origin'}
                                 )[0], 200)

    def test_virtual_hosting_is_off(self):
        # Issue 9: a link on another site to the server through a ++vh++
        # of the attacker's choice made the pages load their scripts from
        # the attacker's host, logged in or not.
        navigate = {'Sec-Fetch-Site': 'cross-site',
                    'Sec-Fetch-Mode': 'navigate'}
        for credentials in (self.admin, None):
            for path in ('/++vh++https:evil.example:443/++/manage',
                         '/%2B%2Bvh%2B%2Bhttps:evil.example:443/++/manage'):
                status, body, headers = request(
                    self.url + path, credentials, headers=navigate)
                self.assertEqual(status, 400, (path, credentials))
                self.assertNotIn(b'evil.example', body)
                self.assertIn("script-src 'self'",
                              headers['Content-Security-Policy'])

    def test_the_request_does_not_choose_the_origin(self):
        # Issue 9: a ++vh++ naming the attacker's site made the attacker's
        # Origin the site's own, and the POST cancelled jobs, deleted the
        # service.
        self.addService('victim')
        for path, data in (
                ('/++vh++http:evil.example:80/++/victim',
                 b'jobs:list=1&CANCEL=Cancel'),
                ('/++vh++http:evil.example:80/++/@@contents.html',
                 b'ids:list=victim&container_delete_button=Delete')):
            status, body, headers = request(
                self.url + path, self.admin, data=data,
                headers={'Origin': 'http://evil.example'})
            self.assertIn(status, (400, 403), path)
        status, body, headers = request(self.url + '/victim/', self.admin)
        self.assertEqual(status, 200)

    def test_zmi_pages_have_no_inline_script_but_the_shims(self):
        # script-src 'self' blocks inline scripts and handlers: the ZMI's
        # own are done by lovely.remotetask.zmi.js, which must know each.
        self.addService('pages')
        status, script, headers = request(
            self.url + '/@@/lovely.remotetask.zmi.js', self.admin)
        self.assertEqual(status, 200)
        self.assertIn('javascript', headers['Content-Type'])
        handled = {"updateCheckboxes(this, 'slaveBox');"}
        for path in ('/manage', '/@@contents.html',
                     '/@@contents.html?type_name=BrowserAdd__'
                     'lovely.remotetask.service.TaskService',
                     '/pages', '/pages/@@addcron.html'):
            status, body, headers = request(
                self.url + path, self.admin,
                headers={'Sec-Fetch-Site': 'same-origin'})
            self.assertEqual(status, 200, path)
            page = body.decode('utf-8')
            self.assertIn('lovely.remotetask.zmi.js', page)
            self.assertIn('data-root-url', page)
            self.assertNotIn('javascript:', page, path)
            for handler in re.findall(r'\son[a-z]+="([^"]*)"', page):
                self.assertIn(handler, handled, path)
                self.assertIn(handler.encode(), script)
            for inline in re.findall(r'<script(?![^>]*\ssrc=)[^>]*>(.*?)'
                                     r'</script>', page, re.S):
                self.assertIn('new_value.focus()', inline, path)

    def test_anonymous_bodies_are_not_parsed(self):
        # Issue 9: an anonymous POST of a non-XML body got the parse Fault
        # -32700 (the publisher had parsed it), not 401.
        self.addService('anonymous')
        for body, kind in ((b'not xml at all', 'text/xml'),
                           (b'<methodCall><methodName>add', 'text/xml'),
                           (b'x=1', 'application/x-www-form-urlencoded')):
            status, answer, headers = request(
                serviceURL(self.url, service='anonymous'), data=body,
                headers={'Content-Type': kind})
            self.assertEqual(status, 401, body)
            self.assertNotIn(b'Fault', answer)
            self.assertIn('basic', headers['WWW-Authenticate'].lower())

    def test_request_bodies_are_limited(self):
        # Issue 9: an anonymous 119 MB XML-RPC body was read and parsed.
        # A body over max-request-body (10MB) is refused by its length
        # (by waitress), before it is received.
        import socket
        host, port = self.url[len('http://'):].split(':')
        token = base64.b64encode(self.admin.encode()).decode()
        for authorization in (f'Basic {token}', None):
            head = ['POST /tasks/ HTTP/1.1', f'Host: {host}:{port}',
                    'Content-Type: text/xml',
                    f'Content-Length: {10 * 1024 * 1024 + 1}']
            if authorization:
                head.append(f'Authorization: {authorization}')
            with socket.create_connection((host, int(port)), 30) as sock:
                sock.sendall('\r\n'.join(head + ['', '']).encode())
                sock.sendall(b'<' * 65536)
                status = sock.recv(100).split(b'\r\n')[0]
            self.assertIn(b' 413 ', status, authorization)

    def exists(self, name):
        status = request(f'{self.url}/{name}/', self.admin)[0]
        self.assertIn(status, (200, 404))
        return status == 200

    def test_state_changes_without_evidence_are_refused(self):
        # Issue 9: without Sec-Fetch, Origin or Referer headers (an old
        # browser, plain HTTP, a privacy setting) the ZMI added and
        # deleted on GET.
        self.addService('kept')
        for path in ('/@@contents.html?type_name=BrowserAdd__lovely.'
                     'remotetask.service.TaskService&new_value=added',
                     '/@@+/action.html?type_name=BrowserAdd__lovely.'
                     'remotetask.service.TaskService&id=added',
                     '/@@contents.html?ids:list=kept&'
                     'container_delete_button=Delete'):
            status, body, headers = request(self.url + path, self.admin)
            self.assertEqual(status, 403, path)
            self.assertIn(b'no form token', body)
        status, body, headers = request(
            self.url + '/@@contents.html', self.admin,
            data=b'ids:list=kept&container_delete_button=Delete')
        self.assertEqual(status, 403)
        self.assertTrue(self.exists('kept'))
        self.assertFalse(self.exists('added'))
        # Pages and links without a query need nothing.
        self.assertEqual(request(self.url + '/kept/', self.admin)[0], 200)

    def test_forms_carry_a_token(self):
        # So that the forms work in browsers that send none of the
        # headers: the ZMI's folder contents, the Jobs tab.
        self.addService('doomed')
        status, page, headers = request(self.url + '/@@contents.html',
                                        self.admin)
        self.assertEqual(status, 200)
        [token] = set(re.findall(
            rb'name="_csrf_token" value="([0-9a-f]{64})"', page))
        status, page, headers = request(self.url + '/doomed/', self.admin)
        self.assertIn(b'name="_csrf_token" value="' + token, page)
        # Another user's token, or none, does not do.
        for data in (b'ids:list=doomed&container_delete_button=Delete',
                     b'ids:list=doomed&container_delete_button=Delete&'
                     b'_csrf_token=' + b'0' * 64):
            self.assertEqual(request(self.url + '/@@contents.html',
                                     self.admin, data=data)[0], 403)
        self.assertTrue(self.exists('doomed'))
        request(self.url + '/@@contents.html', self.admin,
                data=b'ids:list=doomed&container_delete_button=Delete&'
                     b'_csrf_token=' + token)
        self.assertFalse(self.exists('doomed'))

    def test_bad_requests_are_not_errors(self):
        # Issue 9: each of these was a 500, with a traceback logged twice.
        self.addService('probed')
        same = {'Sec-Fetch-Site': 'same-origin'}
        before = ServerLayer.server.output().count('Traceback')
        for path, credentials, expected in (
                ('/probed?x:int=abc', None, 400),
                ('/probed?x:int=abc', self.admin, 400),
                ('/probed/++item++999999', self.admin, 404),
                ('/probed/++item++abc', self.admin, 404),
                ('/probed/++attribute++_data', self.admin, 404),
                ('/probed/++attribute++nosuch', self.admin, 404)):
            status, body, headers = request(self.url + path, credentials,
                                            headers=same)
            self.assertEqual(status, expected, path)
        status, body, headers = request(
            self.url + '/probed/@@jobs.html', self.admin, headers=same,
            data=b'jobs:int=x&CANCEL=Cancel')
        self.assertEqual(status, 400)
        for method in ('OPTIONS', 'PUT', 'DELETE', 'PATCH'):
            for credentials in (self.admin, None):
                req = urllib.request.Request(
                    self.url + '/probed', method=method, headers=same)
                if credentials:
                    req.add_header('Authorization', 'Basic ' +
                                   base64.b64encode(
                                       credentials.encode()).decode())
                with self.assertRaises(urllib.error.HTTPError) as e:
                    urllib.request.urlopen(req, timeout=30)
                self.assertEqual(e.exception.code, 405, method)
                self.assertEqual(e.exception.headers['Allow'],
                                 'GET, HEAD, POST')
        self.assertEqual(ServerLayer.server.output().count('Traceback'),
                         before)
        self.assertIn("Refused GET /probed: x:int: An integer was expected",
                      ServerLayer.server.output())
        self.assertTrue(self.exists('probed'))

    def test_no_forged_log_lines(self):
        # Issue 9: the guard logged PATH_INFO as received.
        forged = '2030-01-01T00:00:00 CRITICAL [lovely.remotetask] FORGED'
        path = '/x%0a' + forged.replace(' ', '%20')
        request(self.url + path, self.admin, data=b'a=1',
                headers={'Origin': 'http://evil.example'})
        request(self.url + '/++vh++x' + path)
        request(self.url + path + '?x:int=%0a', self.admin,
                headers={'Sec-Fetch-Site': 'same-origin'})
        output = ServerLayer.server.output()
        self.assertIn('FORGED', output)
        self.assertNotIn('\n' + forged, output)

    def test_zmi_scripts_run_under_the_policy(self):
        # A real browser, if there is one: the navigation tree, which
        # inline scripts started before, loads; the Jobs tab breaks no
        # rule of the policy.
        import shutil
        chromium = shutil.which('chromium') or shutil.which(
            'chromium-browser')
        if chromium is None:
            self.skipTest('no chromium (Debian package chromium)')
        self.addService('browsed')
        url = self.url.replace('http://', f'http://{self.admin}@')
        with tempfile.TemporaryDirectory() as profile:
            shown = subprocess.run(
                [chromium, '--headless', '--no-sandbox', '--disable-gpu',
                 f'--user-data-dir={profile}', '--enable-logging=stderr',
                 '--v=0', '--virtual-time-budget=5000', '--dump-dom',
                 url + '/browsed/@@jobs.html'],
                capture_output=True, text=True, timeout=STARTUP)
        self.assertIn('>[top]</a>', shown.stdout, shown.stderr[-2000:])
        self.assertNotIn('Content Security Policy', shown.stderr)

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


class LoginThrottleTests(unittest.TestCase):

    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory(prefix='remotetask-')
        env = environment(REMOTETASK_ADMIN='boss:Very-Secret')
        self.server = Remotetask(self.tmp.name, 'serve', '--port', '0',
                                 env=env)

    def tearDown(self):
        try:
            self.server.stop()
        finally:
            self.server.kill()
            self.tmp.cleanup()

    def test_failed_logins_are_slowed_down_and_logged(self):
        # Issue 9: 60 wrong passwords at 200/s, then the right one worked.
        url = self.server.waitFor(
            r'Serving on (http://127\.0\.0\.1:\d+)/')[1] + '/manage'
        statuses = [request(url, f'boss:guess{n}')[0] for n in range(60)]
        self.assertEqual(statuses[0], 401)
        self.assertIn(429, statuses)
        self.assertEqual(request(url, 'boss:Very-Secret')[0], 429)
        output = self.server.output()
        self.assertIn("Failed login 'boss' from 127.0.0.1", output)
        self.assertIn('too many failed logins', output)
        self.assertNotIn('guess', output)


class RolesTests(unittest.TestCase):
    """The roles of site.zcml, granted to users of var/site.zcml."""

    USERS = '''
        <principal id="test.viewer" title="Viewer" login="viewer"
                   password="viewerpw" />
        <grant role="lovely.remotetask.Viewer" principal="test.viewer" />
        <principal id="test.manager" title="Manager" login="manager"
                   password="managerpw" />
        <grant role="lovely.remotetask.Manager" principal="test.manager" />
        </configure>'''

    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory(prefix='remotetask-')
        self.ids = makeInstance(self.tmp.name, 2)
        site = os.path.join(self.tmp.name, 'var', 'site.zcml')
        with open(site) as f:
            text = f.read()
        with open(site, 'w') as f:
            f.write(text.replace('</configure>', self.USERS))
        # No processing: the jobs stay queued for cancel.
        conf = os.path.join(self.tmp.name, 'var', 'zope.conf')
        with open(conf) as f:
            text = f.read()
        with open(conf, 'w') as f:
            f.write(text.replace('autostart *@*', ''))
        self.server = Remotetask(self.tmp.name, 'serve', '--port', '0',
                                 env=environment(REMOTETASK_ADMIN='a:b'))
        self.url = self.server.waitFor(
            r'Serving on (http://127\.0\.0\.1:\d+)/')[1]

    def tearDown(self):
        try:
            self.server.stop()
        finally:
            self.server.kill()
            self.tmp.cleanup()

    def test_viewer_and_manager(self):
        same = {'Sec-Fetch-Site': 'same-origin'}
        first, second = self.ids
        for login in ('viewer:viewerpw', 'manager:managerpw'):
            for path in ('/tasks', f'/tasks/{first}'):
                status, body, headers = request(self.url + path, login,
                                                headers=same)
                self.assertEqual(status, 200, (login, path))
            # Neither may manage the root folder.
            self.assertEqual(request(self.url + '/@@contents.html', login,
                                     headers=same)[0], 403, login)
            with xmlrpc.client.ServerProxy(
                    serviceURL(self.url, login)) as proxy:
                self.assertEqual(proxy.getStatus(first), 'queued')
        # The viewer sees no buttons and may change nothing.
        status, body, headers = request(self.url + '/tasks',
                                        'viewer:viewerpw', headers=same)
        self.assertNotIn(b'name="CANCEL"', body)
        with xmlrpc.client.ServerProxy(
                serviceURL(self.url, 'viewer:viewerpw')) as proxy:
            with self.assertRaises(xmlrpc.client.Fault) as caught:
                proxy.cancel(first)
            self.assertEqual(caught.exception.faultCode, 403)
        status, body, headers = request(
            self.url + '/tasks', 'viewer:viewerpw', headers=same,
            data=f'jobs:list={first}&CANCEL=Cancel'.encode())
        self.assertEqual(status, 403)
        # The manager may.
        status, body, headers = request(self.url + '/tasks',
                                        'manager:managerpw', headers=same)
        self.assertIn(b'name="CANCEL"', body)
        with xmlrpc.client.ServerProxy(
                serviceURL(self.url, 'manager:managerpw')) as proxy:
            self.assertEqual(proxy.getStatus(first), 'queued')
            proxy.cancel(first)
            self.assertEqual(proxy.getStatus(first), 'cancelled')
            self.assertEqual(proxy.getStatus(second), 'queued')


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
