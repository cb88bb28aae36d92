"""The Jobs tab in a real browser, against a real ``remotetask serve``.

Headless Chromium (Debian's ``chromium``; ``make test`` installs it when
it may) driven by Playwright, never Playwright's own browser download.
Without either, the test skips and says which is missing.  Jobs are added
over XML-RPC; the page must show them complete through its live refresh,
without a reload.  Every step leaves a screenshot in the test's temporary
directory (kept, and named, when the test fails); any JavaScript error
(a script error, a Content-Security-Policy violation, a failed request
the page makes) fails the test.
"""
import os
import shutil
import subprocess
import sys
import tempfile
import unittest
import xmlrpc.client

from lovely.remotetask.app.tests.test_server import Remotetask
from lovely.remotetask.app.tests.test_server import STARTUP
from lovely.remotetask.app.tests.test_server import addService
from lovely.remotetask.app.tests.test_server import environment
from lovely.remotetask.app.tests.test_server import serviceURL


LOGIN = 'boss', 'Very-Secret'
#: Milliseconds a step may take in the browser (a loaded machine).
STEP = 60000
#: The task of browsertasks.py, as var/site.zcml registers it.
TASK_ZCML = '''
  <utility
      component="lovely.remotetask.app.tests.browsertasks.failWhile"
      provides="lovely.remotetask.interfaces.ITask"
      name="failWhile"
      />
</configure>'''


def chromium():
    return shutil.which('chromium') or shutil.which('chromium-browser')


class JobsTabInABrowserTests(unittest.TestCase):

    def setUp(self):
        if chromium() is None:
            self.skipTest('no chromium (Debian package chromium; make test '
                          'installs it when run as root)')
        try:
            import playwright.sync_api  # noqa: F401
        except ImportError:
            self.skipTest('no playwright (the test extra of setup.py)')
        self.tmp = tempfile.mkdtemp(prefix='remotetask-browser-')
        self.shots = os.path.join(self.tmp, 'screenshots')
        os.mkdir(self.shots)
        self.server = None
        self.passed = False
        self.makeInstance()
        self.server = Remotetask(
            self.tmp, 'serve', '--host', '127.0.0.1', '--port', '0',
            env=environment(REMOTETASK_ADMIN=':'.join(LOGIN)))
        self.url = self.server.waitFor(
            r'Serving on (http://127\.0\.0\.1:\d+)/')[1]
        addService(self.url, ':'.join(LOGIN), 'tasks')
        self.proxy = xmlrpc.client.ServerProxy(
            serviceURL(self.url, ':'.join(LOGIN), 'tasks'))
        self.marker = os.path.join(self.tmp, 'failing')

    def tearDown(self):
        if self.server is not None:
            try:
                self.server.stop()
            finally:
                self.server.kill()
        if self.proxy is not None:
            self.proxy('close')()
        self.proxy = None
        if not self.passed or os.environ.get('REMOTETASK_KEEP_SCREENSHOTS'):
            print(f'\nScreenshots of {self.id()}: {self.shots}')
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def makeInstance(self):
        """var/ of a new instance, with the test's task in site.zcml."""
        subprocess.run([sys.executable, '-c',
                        'from lovely.remotetask.app import instance; '
                        'instance.make()'], cwd=self.tmp, check=True,
                       env=environment(), timeout=STARTUP)
        path = os.path.join(self.tmp, 'var', 'site.zcml')
        with open(path) as f:
            text = f.read()
        head, tail = text.rsplit('</configure>', 1)
        with open(path, 'w') as f:
            f.write(head + TASK_ZCML + tail)

    def shot(self, page, name):
        page.screenshot(path=os.path.join(self.shots, name + '.png'),
                        full_page=True)

    def waitForJS(self, page, condition, arg=None):
        page.wait_for_function(condition, arg=arg, timeout=STEP)

    def test_operating_jobs_in_the_jobs_tab(self):
        from playwright.sync_api import sync_playwright
        errors = []
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium(),
                                        args=['--no-sandbox'])
            try:
                context = browser.new_context(http_credentials={
                    'username': LOGIN[0], 'password': LOGIN[1]})
                page = context.new_page()
                page.on('console', lambda message: errors.append(
                    message.text) if message.type == 'error' else None)
                page.on('pageerror', lambda error: errors.append(
                    str(error)))
                self.steps(page)
            finally:
                browser.close()
        self.assertEqual(errors, [], 'JavaScript errors in the console')
        self.passed = True

    def steps(self, page):
        jobs = self.url + '/tasks/@@jobs.html'
        page.goto(jobs)
        self.assertIn('There are no jobs.', page.content())
        self.assertTrue(page.is_checked('#live-refresh'))
        # The server's autostart may have started processing already.
        if page.query_selector('input[name="START_PROCESSING"]'):
            page.click('input[name="START_PROCESSING"]')
            page.wait_for_selector('text=Processing started')
        page.wait_for_selector('input[name="STOP_PROCESSING"]')
        self.shot(page, '01-empty-processing')

        # Jobs added over XML-RPC complete on the page, without a reload:
        # a reload would lose this mark.
        page.evaluate('window.notReloaded = true')
        ids = [self.proxy.add('echo', {'n': n}) for n in range(3)]
        self.waitForJS(page, '''() => document.querySelectorAll(
            'table.jobs tbody .status-completed').length === 3''')
        self.assertTrue(page.evaluate('window.notReloaded === true'))
        self.assertEqual(page.inner_text(
            '.statusCounts .count[data-status="completed"]'), '3')
        # The newest first (to the second; jobs of a second by id).
        created = [cell.inner_text() for cell in page.query_selector_all(
            'table.jobs tbody .tableCreated')]
        self.assertEqual(created, sorted(created, reverse=True))
        self.assertEqual(sorted(
            int(cell.inner_text()) for cell in page.query_selector_all(
                'table.jobs tbody .tableId')), sorted(ids))
        self.shot(page, '02-completed-by-live-refresh')

        # Job data the live refresh brings is text, never markup: the
        # rows are built with DOM calls (jobs.js), not innerHTML.
        # The Queue column comes with it (XML-RPC add: task, input,
        # startLater, uniqueKey, after, priority).
        evil = '<img src=x onerror="window.owned=1">'
        ids.append(self.proxy.add('echo', {'html': evil}, False, '<b>k',
                                  [], 7))
        self.waitForJS(page, '''() => document.querySelectorAll(
            'table.jobs tbody .status-completed').length === 4''')
        self.assertTrue(page.evaluate('window.notReloaded === true'))
        self.assertIn(evil, page.inner_text(
            'table.jobs tbody tr:first-child .tableDetail'))
        self.assertEqual(page.inner_text(
            'table.jobs tbody tr:first-child .tableQueue'),
            'priority 7, key <b>k')
        self.assertIsNone(page.query_selector('table.jobs tbody img'))
        self.assertIsNone(page.query_selector('table.jobs tbody b'))
        self.assertFalse(page.evaluate('window.owned === 1'))
        # The rows the script built link and select as the server's do.
        self.assertEqual(page.get_attribute(
            'table.jobs tbody tr:first-child .tableId a', 'href'),
            f'{self.url}/tasks/{ids[-1]}')
        self.assertEqual(page.get_attribute(
            'table.jobs tbody tr:first-child input[type="checkbox"]',
            'value'), str(ids[-1]))
        self.shot(page, '02a-job-data-as-text')

        # While jobs are selected, the counts refresh, the rows stay.
        page.check('table.jobs tbody tr:first-child input[type="checkbox"]')
        ids.append(self.proxy.add('echo', {'n': 3}))
        self.waitForJS(page, '''() => document.querySelector(
            '.statusCounts .count[data-status="completed"]')
            .textContent === "5"''')
        self.assertEqual(len(page.query_selector_all('table.jobs tbody tr')),
                         4)
        self.assertTrue(page.is_checked(
            'table.jobs tbody tr:first-child input[type="checkbox"]'))
        self.assertTrue(page.is_visible('.live-paused'))
        self.shot(page, '02b-selection-kept')
        page.uncheck('table.jobs tbody tr:first-child input[type="checkbox"]')
        self.waitForJS(page, '''() => document.querySelectorAll(
            'table.jobs tbody tr').length === 5''')

        # The switch: off, and the browser remembers it.
        page.uncheck('#live-refresh')
        page.reload()
        self.assertFalse(page.is_checked('#live-refresh'))
        page.check('#live-refresh')

        # A job that fails, retried from its own page.
        open(self.marker, 'w').close()
        failing = self.proxy.add('failWhile', {'path': self.marker})
        self.waitForJS(page, '''() => document.querySelectorAll(
            'table.jobs tbody .status-error').length === 1''')
        self.assertIn('is there', page.inner_text(
            'table.jobs tbody tr:first-child .tableError'))
        self.shot(page, '03-failed')
        page.click(f'table.jobs .tableId a:text-is("{failing}")')
        page.wait_for_selector('input[name="RETRY"]')
        self.shot(page, '04-job-page')
        os.remove(self.marker)
        page.click('input[name="RETRY"]')
        page.wait_for_load_state()
        self.shot(page, '05-retried')
        page.goto(jobs)
        self.waitForJS(page, '''() => document.querySelectorAll(
            'table.jobs tbody .status-completed').length === 6''')
        self.assertEqual(self.proxy.getStatus(failing), 'completed')
        self.shot(page, '06-retry-completed')

        # Search by id: the job's page.
        page.fill('#search-jobid', str(ids[0]))
        page.click('input[name="SEARCH"]')
        page.wait_for_url(f'{self.url}/tasks/{ids[0]}')
        self.shot(page, '07-found-by-id')

        # Remove all asks first, then removes.
        page.goto(jobs)
        page.click('input[name="CLEAN_ALL"]')
        self.assertIn('Remove all: 6 finished jobs',
                      page.inner_text('.confirmation'))
        self.shot(page, '08-confirm-remove-all')
        page.click('input.confirm[name="CLEAN_ALL"]')
        page.wait_for_selector('text=Cleaned 6 Jobs')
        self.assertEqual(
            page.inner_text('.statusCounts .count[data-status=""]'), '0')
        self.shot(page, '09-removed')
        page.click('input[name="STOP_PROCESSING"]')
        page.wait_for_selector('text=Processing stopped')
