"""The tasks of the benchmarks, for this package and its peers.

Every system runs the same task body: note the job's key and the time it
started (``common.StartLog``), and for the 10 ms jobs sleep 10 ms outside
the database.  The key is the job's input.

This package: ``bench.noop`` and ``bench.sleep`` are registered by the
site.zcml the harness writes (``benchtasks.zcml``) or by ``register()``.
"""
import time

import zope.component
import zope.interface

from common import StartLog

from lovely.remotetask.interfaces import ITask


@zope.interface.provider(ITask)
def noop(service, jobid, input):
    StartLog.note(input)


@zope.interface.provider(ITask)
def sleep(service, jobid, input):
    StartLog.note(input)
    time.sleep(0.01)


def register():
    zope.component.provideUtility(noop, ITask, 'bench.noop')
    zope.component.provideUtility(sleep, ITask, 'bench.sleep')
