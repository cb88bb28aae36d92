"""Edge cases of events, metrics, health checks and the worker's
monitoring address (the narrative is in health.rst and metrics.rst)."""
import doctest
import json
import os
import re
import threading
import unittest

import transaction
import webtest
import ZODB
import zope.component
import zope.component.testing
from prometheus_client.parser import text_string_to_metric_families
from ZODB.DemoStorage import DemoStorage

from lovely.remotetask import events
from lovely.remotetask import health
from lovely.remotetask import metrics
from lovely.remotetask import processor
from lovely.remotetask.app import monitor
from lovely.remotetask.app import settings
from lovely.remotetask.service import TaskService
from lovely.remotetask.tests.faultsupport import waitFor


DASHBOARD = os.path.join(os.path.dirname(__file__), *[os.pardir] * 4,
                         'docs', 'grafana-dashboard.json')


class WithDatabase(unittest.TestCase):

    def setUp(self):
        zope.component.testing.setUp()
        from zope.site.folder import rootFolder
        self.db = ZODB.DB(DemoStorage())
        self.tm = transaction.TransactionManager()
        self.conn = self.db.open(transaction_manager=self.tm)
        self.conn.root()['Application'] = app = rootFolder()
        app['tasks'] = self.service = TaskService()
        self.tm.commit()
        metrics.reset()
        from lovely.remotetask import task
        from lovely.remotetask.interfaces import ITask
        zope.component.provideUtility(task.echo, ITask, 'echo')

    def tearDown(self):
        metrics.reset()
        processor.stopAll(db=self.db)
        self.tm.abort()
        self.conn.close()
        self.db.close()
        zope.component.testing.tearDown()

    def names(self):
        text = metrics.exposition(self.db).decode()
        return {sample.name
                for family in text_string_to_metric_families(text)
                for sample in family.samples}


class EventTests(WithDatabase):

    def test_a_listener_that_raises_fails_nothing(self):
        seen = []

        @zope.component.adapter(events.IJobEnqueued)
        def broken(event):
            seen.append(event)
            raise RuntimeError('listener bug')
        zope.component.provideHandler(broken)
        with self.assertLogs('lovely.remotetask', 'ERROR') as logged:
            jobid = self.service.add('echo', None)
            self.tm.commit()
        self.assertEqual([event.jobid for event in seen], [jobid])
        self.assertIn('A listener failed', logged.output[0])
        self.assertEqual(self.service.getStatus(jobid), 'queued')

    def test_events_of_an_aborted_transaction_are_not_delivered(self):
        seen = []
        zope.component.provideHandler(seen.append, [events.IJobEvent])
        self.service.add('echo', None)
        self.tm.abort()
        self.assertEqual(seen, [])

    def test_one_hook_per_transaction(self):
        seen = []
        zope.component.provideHandler(seen.append, [events.IJobEnqueued])
        for n in range(5):
            self.service.add('echo', n)
        txn = self.tm.get()
        hooks = [hook for hook, args, kws in txn.getAfterCommitHooks()
                 if hook is events._deliver]
        self.assertEqual(len(hooks), 1)
        self.tm.commit()
        self.assertEqual(len(seen), 5)
        self.assertEqual({event.service for event in seen}, {'@tasks'})

    def test_ready_since(self):
        import datetime
        jobid = self.service.add('echo', None)
        job = self.service.jobs[jobid]
        self.assertEqual(events.readySince(job), job.created)
        due = job.created + datetime.timedelta(seconds=30)
        job.due = due
        self.assertEqual(events.readySince(job), due)
        later = self.service.add('echo', None, startLater=True)
        self.assertIsNone(events.readySince(self.service.jobs[later]))


class MetricsTests(WithDatabase):

    def test_the_dashboard_uses_metrics_that_exist(self):
        if not os.path.exists(DASHBOARD):  # pragma: no cover
            self.skipTest('docs/ is not installed')
        with open(DASHBOARD) as f:
            dashboard = json.load(f)
        used = set()
        for panel in dashboard['panels']:
            for target in panel['targets']:
                used.update(re.findall(r'remotetask_\w+', target['expr']))
        # Histograms and counters show up once observed.
        zope.component.provideHandler(metrics.observeJob)
        zope.component.provideHandler(metrics.observeConflict)
        self.service.retryDelay = 0
        self.service.add('echo', None)
        self.tm.commit()
        proc = processor.SimpleProcessor(self.db, self.service._p_oid)
        proc.step()
        proc.stop()
        events.notify(events.ConflictRetried(self.service))
        metrics.RECOVERED.labels('@tasks')
        metrics.FAILED.labels('@tasks', 'echo')
        metrics.RETRIED.labels('@tasks', 'echo')
        missing = used - self.names()
        self.assertEqual(missing, set())

    def test_no_database(self):
        names = {sample.name for family in text_string_to_metric_families(
            metrics.exposition().decode()) for sample in family.samples}
        self.assertIn('remotetask_info', names)
        self.assertNotIn('remotetask_jobs', names)

    def test_no_root_folder_yet(self):
        db = ZODB.DB(DemoStorage())
        try:
            text = metrics.exposition(db).decode()
        finally:
            db.close()
        self.assertNotIn('remotetask_jobs{', text)


class HealthTests(WithDatabase):

    def test_a_storage_that_raises_is_down(self):
        class Broken:
            class storage:
                pass

            def open(self, **kw):
                raise OSError('no route to host')
        with self.assertLogs('lovely.remotetask', 'INFO') as logged:
            ready, body = health.readiness(Broken())
        self.assertFalse(ready)
        self.assertEqual(body['checks'], {'database': 'down'})
        self.assertNotIn('route', json.dumps(body))
        self.assertIn('no route to host', logged.output[0])

    def test_a_storage_that_hangs_is_down_and_checked_once(self):
        release = threading.Event()
        opened = []

        class Hanging:
            class storage:
                pass

            def open(self, **kw):
                opened.append(1)
                release.wait(30)
                raise OSError('gave up')
        db = Hanging()
        try:
            self.assertFalse(health.readiness(db, timeout=0.05)[0])
            # The first check still hangs: no second one starts.
            self.assertFalse(health.readiness(db, timeout=0.05)[0])
            self.assertEqual(len(opened), 1)
        finally:
            release.set()
            waitFor(lambda: not health._probe._running, 30,
                    message='the check to end')
            for thread in threading.enumerate():
                if thread.name == 'health-check':
                    thread.join(30)

    def test_a_flood_shares_one_check(self):
        # Concurrent callers wait for the check in flight and get its
        # result; nobody starts a second one.  (Patient callers: the
        # default patience is half a second, see the next test.)
        calls = []
        release = threading.Event()

        def check(db, timeout):
            calls.append(db)
            release.wait(30)
            return True
        shared = health.SharedCheck(check, fresh=0, patience=60)
        db = type('DB', (), {})()
        results = []
        threads = [threading.Thread(
            target=lambda: results.append(shared(db, 30)))
            for n in range(8)]
        for thread in threads:
            thread.start()
        try:
            waitFor(lambda: calls and shared.waiting(db) == 7, 30,
                    message='the callers to wait for one check')
        finally:
            release.set()
            for thread in threads:
                thread.join(30)
        self.assertEqual(results, [True] * 8)
        self.assertEqual(len(calls), 1)
        # fresh=0: the next caller checks again.
        self.assertTrue(shared(db, 30))
        self.assertEqual(len(calls), 2)

    def test_a_result_is_fresh_for_a_second(self):
        now = [100.0]
        calls = []

        def check(db, timeout):
            calls.append(db)
            return len(calls) % 2 == 1
        shared = health.SharedCheck(check, clock=lambda: now[0])
        self.assertEqual(health.FRESH, 1.0)
        one, two = type('DB', (), {})(), type('DB', (), {})()
        self.assertTrue(shared(one, 5))
        now[0] += 0.9
        self.assertTrue(shared(one, 5))
        self.assertEqual(len(calls), 1)
        # Another database has its own check.
        self.assertFalse(shared(two, 5))
        self.assertEqual(len(calls), 2)
        now[0] += 0.2
        self.assertTrue(shared(one, 5))
        self.assertEqual(len(calls), 3)

    def test_a_check_that_raises_is_down_for_all(self):
        def check(db, timeout):
            raise RuntimeError('boom')
        shared = health.SharedCheck(check)
        db = type('DB', (), {})()
        with self.assertLogs('lovely.remotetask', 'ERROR') as logged:
            self.assertFalse(shared(db, 5))
        self.assertIn('boom', '\n'.join(logged.output))
        self.assertFalse(shared(db, 5))

    def test_waiters_of_a_stalled_check_answer_at_once(self):
        # A check that hangs holds its own caller only: the callers that
        # come meanwhile wait PATIENCE at most, then answer the last
        # result if it is recent (STALE), else down.
        now = [100.0]
        release = threading.Event()
        stall = [False]

        def check(db, timeout):
            if stall[0]:
                release.wait(60)
            return True
        shared = health.SharedCheck(check, fresh=0,
                                    clock=lambda: now[0])
        self.assertEqual(shared.patience, health.PATIENCE)
        self.assertLess(health.PATIENCE, 1)
        db = type('DB', (), {})()
        self.assertTrue(shared(db, 30))     # the last result: up
        stall[0] = True
        leader = threading.Thread(target=shared, args=(db, 30))
        leader.start()
        try:
            waitFor(lambda: shared.inFlight(db), 30,
                    message='the check to start')

            def flood(count):
                results = []
                threads = [threading.Thread(
                    target=lambda: results.append(shared(db, 30)))
                    for n in range(count)]
                for thread in threads:
                    thread.start()
                for thread in threads:
                    # Well before the check's timeout of 30 seconds.
                    thread.join(10)
                    self.assertFalse(thread.is_alive())
                return results
            # The last result is recent: it stands in.
            now[0] += health.STALE
            self.assertEqual(flood(6), [True] * 6)
            # Too old: down, at once too.
            now[0] += 1
            self.assertEqual(flood(6), [False] * 6)
            self.assertTrue(leader.is_alive())
            self.assertTrue(shared.inFlight(db))
            self.assertEqual(shared.waiting(db), 0)
        finally:
            release.set()
            leader.join(30)
        self.assertFalse(shared.inFlight(db))

    def test_waiters_give_up_after_the_timeout(self):
        release = threading.Event()

        def check(db, timeout):
            release.wait(30)
            return True
        shared = health.SharedCheck(check, grace=0)
        db = type('DB', (), {})()
        leader = threading.Thread(target=shared, args=(db, 30))
        leader.start()
        try:
            waitFor(lambda: shared.inFlight(db), 30,
                    message='the check to start')
            self.assertFalse(shared(db, 0.01))
        finally:
            release.set()
            leader.join(30)

    def test_a_flood_of_requests_costs_one_check(self):
        # The worker's /health: 20 concurrent requests, one database
        # check (the clock stands still: the result stays fresh).
        checked = []
        real = health.databaseUp

        def counting(db):
            checked.append(db)
            return real(db)
        self.patch(health, 'databaseUp', counting)
        self.patch(health, '_shared', health.SharedCheck(
            health._probe, clock=lambda: 0.0))
        app = webtest.TestApp(monitor.make_app(self.db))
        answers = []

        def get():
            answers.append(app.get('/health', status=503).json['checks'])
        threads = [threading.Thread(target=get) for n in range(20)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        self.assertEqual(answers, [{'database': 'up',
                                    'processors': 'down'}] * 20)
        self.assertEqual(len(checked), 1)

    def patch(self, module, name, value):
        self.addCleanup(setattr, module, name, getattr(module, name))
        setattr(module, name, value)

    def test_processor_states(self):
        self.assertEqual(processor.processorStates(self.db), [])
        self.service.startProcessing()
        self.tm.commit()
        self.assertEqual(processor.processorStates(self.db),
                         [('remotetasks.tasks', True)])
        self.assertTrue(health.processorsUp(self.db))

    def test_worker_of_thread(self):
        self.service.startProcessing()
        self.tm.commit()
        [(proc, thread)] = processor._registry.values()
        for name in (thread.name, f'job-12:{thread.name}',
                     f'leases:{thread.name}'):
            self.assertEqual(processor.workerOfThread(name), proc.workerId)
        self.assertIsNone(processor.workerOfThread('MainThread'))


class LogContextTests(WithDatabase):

    def test_a_task_logs_with_its_job_task_and_worker(self):
        import logging
        from zope.interface import alsoProvides
        from lovely.remotetask.app.logformat import JSONFormatter
        from lovely.remotetask.interfaces import ITask
        lines = []

        class Capture(logging.Handler):
            def emit(self, record):
                lines.append(JSONFormatter().format(record))
        logger = logging.getLogger('myapp.tasks')
        handler = Capture()
        logger.addHandler(handler)
        self.addCleanup(logger.removeHandler, handler)
        logger.setLevel(logging.INFO)
        self.addCleanup(logger.setLevel, logging.NOTSET)

        def resize(service, jobid, input):
            logger.info('resizing %s', input)
            return input
        alsoProvides(resize, ITask)
        zope.component.provideUtility(resize, ITask, 'resize')
        jobid = self.service.add('resize', 'cat.png')
        self.service.startProcessing()
        self.tm.commit()
        waitFor(lambda: lines, 30, message='the task to log')
        [(proc, thread)] = processor._registry.values()
        self.assertEqual(json.loads(lines[0]), {
            'time': json.loads(lines[0])['time'], 'level': 'INFO',
            'logger': 'myapp.tasks', 'message': 'resizing cat.png',
            'job': jobid, 'task': 'resize', 'worker': proc.workerId})


class MonitorAppTests(WithDatabase):

    def test_metrics_health_and_nothing_else(self):
        app = webtest.TestApp(monitor.make_app(self.db))
        response = app.get('/metrics')
        self.assertEqual(response.content_type, 'text/plain')
        self.assertIn(b'remotetask_jobs{service="@tasks",status="queued"}',
                      response.body)
        self.assertEqual(app.head('/metrics').body, b'')
        app.get('/', status=404)
        app.post('/metrics', status=404)
        # No processor runs in this process: not ready.
        self.assertEqual(app.get('/health', status=503).json['checks'],
                         {'database': 'up', 'processors': 'down'})
        self.assertEqual(app.get('/health/live').json['status'], 'up')

    def test_server_on_a_free_port(self):
        import urllib.request
        server = monitor.MonitorServer(self.db, '127.0.0.1', 0).start()
        try:
            host, port = server.address
            with urllib.request.urlopen(
                    f'http://{host}:{port}/health/live', timeout=30) as r:
                self.assertEqual(json.load(r)['status'], 'up')
        finally:
            server.close()


class RebindingTests(WithDatabase):
    """DNS rebinding: a page of evil.example whose name then resolves to
    127.0.0.1 makes the browser send it to the worker's address, with
    ``Host: evil.example``.  Such requests are answered 421."""

    def status(self, header, **kw):
        """The statuses of three paths asked with ``Host: header``."""
        app = webtest.TestApp(monitor.make_app(self.db, **kw))
        headers = {'Host': header}
        return [app.get(path, headers=headers, expect_errors=True)
                .status_int for path in ('/metrics', '/health/live',
                                         '/nothing')]

    def test_loopback_names_with_or_without_the_port(self):
        for host in ('localhost', 'localhost:9100', 'LocalHost:9100',
                     'localhost.:9100', '127.0.0.1', '127.0.0.1:9100',
                     '[::1]', '[::1]:9100'):
            self.assertEqual(self.status(host), [200, 200, 404], host)

    def test_other_names_are_misdirected(self):
        for host in ('evil.example', 'evil.example:9100',
                     'localhost.evil.example', '127.0.0.1.nip.io:9100',
                     '10.1.2.3:9100', 'localhost:9100:1', 'localhost:x',
                     '[::1', '[::1]x', '', 'local host'):
            self.assertEqual(self.status(host), [421] * 3, host)

    def test_the_answer_tells_why(self):
        app = webtest.TestApp(monitor.make_app(self.db))
        response = app.get('/metrics', headers={'Host': 'evil.example'},
                           status=421)
        self.assertEqual(response.status, '421 Misdirected Request')
        self.assertEqual(response.content_type, 'text/plain')
        self.assertIn('--metrics-allow-host', response.text)
        self.assertEqual(app.head('/health', headers={
            'Host': 'evil.example'}, status=421).body, b'')

    def test_the_bound_address_and_configured_names(self):
        self.assertEqual(self.status('10.1.2.3:9100', host='10.1.2.3'),
                         [200, 200, 404])
        self.assertEqual(self.status('[fd00::1]:9100', host='fd00::1'),
                         [200, 200, 404])
        self.assertEqual(self.status('evil.example', host='10.1.2.3'),
                         [421] * 3)
        names = ['metrics.internal', 'Worker-1.example.']
        for host in ('metrics.internal:9100', 'worker-1.example',
                     'localhost'):
            self.assertEqual(self.status(host, names=names),
                             [200, 200, 404], host)
        self.assertEqual(self.status('evil.example', names=names),
                         [421] * 3)

    def test_a_wildcard_address_takes_addresses_not_names(self):
        # Bound to every address, a request for any of them names it by
        # its number (a Kubernetes probe: the pod's address); a name
        # must be configured.
        for wildcard in ('0.0.0.0', '::'):
            for host in ('10.1.2.3:9100', '[fd00::1]:9100', 'localhost'):
                self.assertEqual(self.status(host, host=wildcard),
                                 [200, 200, 404], (wildcard, host))
            self.assertEqual(self.status('evil.example', host=wildcard),
                             [421] * 3)

    def test_no_host_header(self):
        # HTTP/1.0 without Host: no browser sends that.
        app = monitor.make_app(self.db)
        environ = {'REQUEST_METHOD': 'GET', 'PATH_INFO': '/health/live',
                   'SERVER_NAME': 'x', 'SERVER_PORT': '9100',
                   'wsgi.url_scheme': 'http'}
        started = []
        app(environ, lambda status, headers: started.append(status))
        self.assertEqual(started, ['200 OK'])

    def test_the_server(self):
        import http.client
        server = monitor.MonitorServer(self.db, '127.0.0.1', 0).start()
        try:
            host, port = server.address
            for name, expected in (('evil.example', 421),
                                   (f'127.0.0.1:{port}', 200)):
                conn = http.client.HTTPConnection(host, port, timeout=30)
                try:
                    conn.putrequest('GET', '/health/live', skip_host=True)
                    conn.putheader('Host', name)
                    conn.endheaders()
                    response = conn.getresponse()
                    response.read()
                    self.assertEqual(response.status, expected, name)
                finally:
                    conn.close()
        finally:
            server.close()

    def test_the_worker_option(self):
        from lovely.remotetask.app.main import make_parser as parser
        args = parser().parse_args([
            'worker', '--metrics-port', '0', '--metrics-allow-host', 'a',
            '--metrics-allow-host', 'b.example'])
        self.assertEqual(args.metrics_allow_host, ['a', 'b.example'])
        args = parser().parse_args(['worker'])
        self.assertEqual(args.metrics_allow_host, [])

    def test_a_malformed_name_is_refused_at_startup(self):
        import contextlib
        import io
        from lovely.remotetask.app.main import make_parser as parser
        for bad in ('http://a.example/', 'a b', '', '[::1', 'a:b',
                    'a.example:x'):
            err = io.StringIO()
            with contextlib.redirect_stderr(err), \
                    self.assertRaises(SystemExit) as raised:
                parser().parse_args(['worker', '--metrics-port', '0',
                                     '--metrics-allow-host', bad])
            self.assertEqual(raised.exception.code, 2, bad)
            self.assertIn('--metrics-allow-host', err.getvalue())
            self.assertIn('is not a host name', err.getvalue())
        # Python callers of the guard: an error too, not a name ignored.
        with self.assertRaises(ValueError):
            monitor.HostGuard(None, names=['a b'])


class PoolTests(unittest.TestCase):

    def test_the_pool_grows_to_the_threads_never_shrinks(self):
        db = ZODB.DB(DemoStorage())
        try:
            self.assertEqual(db.getPoolSize(), 7)
            processor.fitPool(db, 4 + processor.CONNECTIONS_PER_PROCESSOR)
            self.assertEqual(db.getPoolSize(), 8)
            processor.fitPool(db, 3)
            self.assertEqual(db.getPoolSize(), 8)
        finally:
            db.close()

    def test_a_worker_sizes_the_pool_to_its_threads(self):
        from zope.site.folder import rootFolder
        zope.component.testing.setUp()
        self.addCleanup(zope.component.testing.tearDown)
        db = ZODB.DB(DemoStorage())
        self.addCleanup(db.close)
        conn = db.open()
        root = conn.root()
        root['Application'] = app = rootFolder()
        app['a'], app['b'] = TaskService(), TaskService()
        transaction.commit()
        conn.close()
        stop = threading.Event()
        worker = threading.Thread(target=processor.runWorker, args=(db,),
                                  kwargs=dict(threads=4, stop=stop,
                                              rescan=0.05, timeout=5))
        worker.start()
        expected = 2 * (4 + processor.CONNECTIONS_PER_PROCESSOR) + 1
        try:
            waitFor(lambda: db.getPoolSize() >= expected, 30,
                    message='the pool to grow')
        finally:
            stop.set()
            worker.join(30)
        self.assertEqual(db.getPoolSize(), expected)


class SettingsTests(unittest.TestCase):

    def test_health_public(self):
        self.assertTrue(settings.parse({}).health_public)
        self.assertFalse(settings.parse(
            {'health-public': 'off'}).health_public)
        with self.assertRaises(settings.InvalidSetting) as e:
            settings.parse({'health-public': 'maybe'})
        self.assertIn('health-public', str(e.exception))

    def test_the_guard_only_when_public(self):
        from lovely.remotetask.app.wsgi import protect

        def inner(environ, start_response):
            start_response('299 Inner', [])
            return [b'']

        def find(app):
            while app is not None:
                if isinstance(app, health.HealthCheck):
                    return app
                app = getattr(app, 'application', None)
        self.assertIsNotNone(find(protect(inner, settings.Settings())))
        self.assertIsNone(find(protect(
            inner, settings.Settings(health_public=False))))


def test_suite():
    return unittest.TestSuite([
        unittest.defaultTestLoader.loadTestsFromName(__name__),
        doctest.DocTestSuite('lovely.remotetask.app.monitor'),
    ])
