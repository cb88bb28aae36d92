"""``/health`` and ``/metrics`` of real processes over a ZEO server.

A ``remotetask serve`` and a ``remotetask worker --metrics-port 0``
(real processes, free ports) share a ZEO server of the test's own.  Both
answer ``/health`` without a login; both scrapes add up to the jobs that
ran; with the ZEO server gone both say 503, and 200 again once it is
back.  Every process is ended by its id in the clean-up.
"""
import json
import os
import re
import subprocess
import sys
import unittest

import zope.component
from prometheus_client.parser import text_string_to_metric_families

from lovely.remotetask import interfaces
from lovely.remotetask import task
from lovely.remotetask.tests import faultsupport
from lovely.remotetask.tests.faultsupport import waitFor
from lovely.remotetask.tests.test_faults import START_TIMEOUT
from lovely.remotetask.tests.test_faults import ProcessTestCase
from lovely.remotetask.tests.test_faults import ZEOStorage
from lovely.remotetask.tests.test_faults import fresh


ADMIN = 'boss:Very-Secret'

ZEO_CLIENT = """\
%import ZEO
<zodb>
  <clientstorage>
    server {host}:{port}
    server-sync on
    wait-timeout 30
  </clientstorage>
</zodb>
"""


def samples(text):
    """(name, labels) -> value of an exposition, parsed by
    prometheus_client."""
    return {(sample.name, tuple(sorted(sample.labels.items()))):
            sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples}


def total(values, name, **labels):
    return sum(value for (each, keys), value in values.items()
               if each == name and all((k, v) in keys
                                       for k, v in labels.items()))


class Monitoring(ZEOStorage, ProcessTestCase):

    def setUp(self):
        super().setUp()
        zope.component.provideUtility(task.echo, interfaces.ITask, 'echo')

    def makeHome(self):
        """An instance whose zope.conf opens the test's ZEO server."""
        from lovely.remotetask.app.tests.test_server import environment
        home = os.path.join(self.dir, 'home')
        os.mkdir(home)
        subprocess.run([sys.executable, '-c',
                        'from lovely.remotetask.app import instance; '
                        'instance.make()'], cwd=home, check=True,
                       env=environment(), timeout=START_TIMEOUT)
        conf = os.path.join(home, 'var', 'zope.conf')
        with open(conf) as f:
            text = f.read()
        text = re.sub(r'^<zodb>.*?^</zodb>\n',
                      ZEO_CLIENT.format(host=self.host, port=self.port)
                      .replace('\\', '\\\\'), text, count=1,
                      flags=re.M | re.S)
        with open(conf, 'w') as f:
            f.write(text)
        return home, conf

    def start(self, home, *args, name):
        from lovely.remotetask.app.tests.test_server import Remotetask
        from lovely.remotetask.app.tests.test_server import environment
        proc = Remotetask(home, *args, name=name,
                          env=environment(REMOTETASK_ADMIN=ADMIN))
        self.addCleanup(proc.kill)
        return proc

    def get(self, url, credentials=None):
        from lovely.remotetask.app.tests.test_server import request
        return request(url, credentials)

    def health(self, base, path='/health'):
        status, body, headers = self.get(base + path)
        self.assertEqual(headers['Content-Type'], 'application/json')
        return status, json.loads(body)

    def waitHealth(self, base, expected, what):
        return waitFor(lambda: self.health(base)[0] == expected, 60, 0.2,
                       f'{what} /health to answer {expected}')

    def test_health_and_metrics_of_serve_and_worker(self):
        db, oid, tm, conn = self.setUpService(leaseTime=60.0)
        service = faultsupport.service(conn)
        # The root folder becomes a site, as the server's bootstrap needs.
        from zope.site.site import LocalSiteManager
        tm.begin()
        root = conn.root()['Application']
        root.setSiteManager(LocalSiteManager(root))
        tm.commit()
        home, conf = self.makeHome()
        serve = self.start(home, 'serve', '--config', conf, '--port', '0',
                           name='serve')
        web = serve.waitFor(r'Serving on (http://[^/\s]+)').group(1)
        worker = self.start(home, 'worker', '--config', conf,
                            '--services', '@tasks', '--threads', '2',
                            '--metrics-port', '0', name='worker')
        monitor = worker.waitFor(
            r'Metrics on (http://[^/\s]+)/metrics').group(1)

        # Both ready, without a login; the answer tells up and the
        # version, nothing else.
        self.waitHealth(web, 200, 'the server')
        self.waitHealth(monitor, 200, 'the worker')
        status, body = self.health(web)
        self.assertEqual(set(body), {'status', 'checks', 'version'})
        self.assertEqual((body['status'], body['checks']),
                         ('up', {'database': 'up'}))
        status, body = self.health(monitor)
        self.assertEqual((status, body['status'], body['checks']),
                         (200, 'up', {'database': 'up', 'processors': 'up'}))
        self.assertEqual(self.health(monitor, '/health/live'),
                         (200, {'status': 'up', 'version': body['version']}))

        # /metrics: a login on the server, the separate address of the
        # worker.
        status, body, headers = self.get(f'{web}/metrics')
        self.assertEqual(status, 401)
        status, body, headers = self.get(f'{monitor}/nothing')
        self.assertEqual(status, 404)

        tm.begin()
        ids = [service.add('echo', n) for n in range(40)]
        tm.commit()
        waitFor(fresh(tm, lambda: service.countJobs('completed')
                      == len(ids)), 120, 0.1, 'all jobs completed')
        status, body, headers = self.get(f'{web}/metrics', ADMIN)
        self.assertEqual(status, 200, body[:300])
        fromServer = samples(body.decode())
        status, body, headers = self.get(f'{monitor}/metrics')
        self.assertEqual(status, 200)
        fromWorker = samples(body.decode())
        # The database's numbers: the same whichever process is asked.
        for values in (fromServer, fromWorker):
            self.assertEqual(total(values, 'remotetask_jobs',
                                   service='@tasks', status='completed'),
                             len(ids))
            self.assertEqual(total(values, 'remotetask_task_jobs',
                                   service='@tasks', task='echo'), len(ids))
            self.assertEqual(total(values, 'remotetask_jobs',
                                   status='queued'), 0)
            self.assertGreaterEqual(total(values, 'remotetask_workers_alive',
                                          service='@tasks'), 2)
        # Each process counts what it ran: together, every job once.
        completed = [total(values, 'remotetask_jobs_completed_total',
                           service='@tasks', task='echo')
                     for values in (fromServer, fromWorker)]
        self.assertEqual(sum(completed), len(ids), completed)
        durations = sum(total(values,
                              'remotetask_job_duration_seconds_count',
                              task='echo')
                        for values in (fromServer, fromWorker))
        self.assertEqual(durations, len(ids))

        # The database goes away: both say so (503), the liveness not.
        self.servers.kill(self.zeo)
        self.waitHealth(web, 503, 'the server')
        self.waitHealth(monitor, 503, 'the worker')
        for base in (web, monitor):
            status, body = self.health(base)
            self.assertEqual(body['status'], 'down')
            self.assertEqual(body['checks']['database'], 'down')
            self.assertEqual(self.health(base, '/health/live')[0], 200)

        # It comes back on the same port: ready again.
        self.startZEO(self.port)
        self.waitHealth(web, 200, 'the server')
        self.waitHealth(monitor, 200, 'the worker')

        self.assertEqual(worker.stop(), 0, worker.output()[-2000:])
        self.assertEqual(serve.stop(), 0, serve.output()[-2000:])


def test_suite():
    return unittest.defaultTestLoader.loadTestsFromTestCase(Monitoring)
