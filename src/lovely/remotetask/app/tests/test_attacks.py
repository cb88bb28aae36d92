"""The attacks of issue 9 against a running ``remotetask serve``.

Each test attacks the way the issue describes and fails before the fix:
virtual hosting chosen by the request, the cross-site guard trusting it,
bodies parsed before authentication, state changes without evidence of
their origin, bad requests answered 500, forged log lines, password
guessing; and what the fixes must keep working (the ZMI's scripts under
the Content-Security-Policy, forms in browsers that send no headers, the
roles).
"""
import base64
import os
import re
import subprocess
import tempfile
import unittest
import urllib.error
import urllib.request
import xmlrpc.client

from lovely.remotetask.app.tests.test_server import Remotetask
from lovely.remotetask.app.tests.test_server import ServerLayer
from lovely.remotetask.app.tests.test_server import STARTUP
from lovely.remotetask.app.tests.test_server import addService
from lovely.remotetask.app.tests.test_server import environment
from lovely.remotetask.app.tests.test_server import makeInstance
from lovely.remotetask.app.tests.test_server import request
from lovely.remotetask.app.tests.test_server import serviceURL


class AttackTests(unittest.TestCase):

    layer = ServerLayer

    def setUp(self):
        self.url = ServerLayer.url
        self.admin = ServerLayer.admin

    def addService(self, name):
        addService(self.url, self.admin, name)

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
