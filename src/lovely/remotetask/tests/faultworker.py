"""A worker process for the fault tests: ``python -m ...faultworker ...``.

What ``remotetask worker`` does, without ZCML: open the database of a
``<zodb>`` configuration, register the test tasks, and call
``lovely.remotetask.processor.runWorker`` until SIGTERM or SIGINT.  It
prints ``READY`` when it processes.
"""
import argparse
import logging
import signal
import sys
import threading

from lovely.remotetask import processor
from lovely.remotetask.tests import faultsupport


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument('config')
    parser.add_argument('--dir', required=True)
    parser.add_argument('--label', default='worker')
    parser.add_argument('--services', default='@tasks')
    parser.add_argument('--threads', type=int, default=1)
    parser.add_argument('--wait', type=float, default=0.5)
    parser.add_argument('--shutdown-timeout', type=float, default=30.0)
    args = parser.parse_args(argv)
    faultsupport.exitWithParent()
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr,
        format='%(asctime)s %(process)d %(threadName)s %(levelname)s '
               '%(name)s %(message)s')
    faultsupport.registerTasks(args.dir, args.label)
    db = faultsupport.openDatabase(args.config)
    stop = threading.Event()

    def handle(signum, frame):
        # Set the event from another thread: Event.set() takes a lock
        # that the main thread (waiting on the event) may hold just now.
        logging.getLogger('faultworker').info(
            '%s: stopping', signal.Signals(signum).name)
        threading.Thread(target=stop.set, daemon=True).start()
    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)
    print('READY', processor.workerName('worker'), flush=True)
    processor.runWorker(db, services=args.services, threads=args.threads,
                        stop=stop, waitTime=args.wait,
                        timeout=args.shutdown_timeout)
    logging.getLogger('faultworker').info('stopped')
    # A job still running past the shutdown timeout is abandoned here (its
    # thread is a daemon); its lease expires and another worker takes it.
    # Close the database in a bounded way and leave normally, so that exit
    # handlers (coverage, for one) run.
    closer = threading.Thread(target=db.close, daemon=True)
    closer.start()
    closer.join(10.0)
    print('STOPPED', flush=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
