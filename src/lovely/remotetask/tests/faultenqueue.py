"""An enqueuer for the fault tests: ``python -m ...faultenqueue ...``.

Adds jobs from several threads at once, each transaction adding a few
jobs and the data they need (``payload``), and retries a conflicting
transaction as a publisher retries a request (here with a short random
pause, doubling, and more often).  Some transactions are aborted on
purpose: their jobs must never exist or run.  Prints one JSON line: the
committed ids, the aborted ids and the conflict figures.
"""
import argparse
import json
import random
import sys
import threading
import time

import transaction
from transaction.interfaces import TransientError

from lovely.remotetask.tests import faultsupport


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument('config')
    parser.add_argument('--jobs', type=int, default=2000)
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--batch', type=int, default=4)
    parser.add_argument('--abort-every', type=int, default=25)
    parser.add_argument('--retries', type=int, default=30)
    parser.add_argument('--verbose', action='store_true')
    args = parser.parse_args(argv)
    faultsupport.exitWithParent()
    faultsupport.registerTasks()
    db = faultsupport.openDatabase(args.config)
    results = []
    classes = {}   # class name -> conflicts on objects of that class
    oids = {}      # hex oid -> conflicts on that object (where known)
    lock = threading.Lock()

    def add(tm, conn, n):
        tm.begin()
        root = conn.root()
        service = faultsupport.service(conn)
        ids = []
        for i in range(n):
            jobid = service.add(faultsupport.RECORD, {'payload': True})
            root['payload'][jobid] = jobid
            ids.append(jobid)
        return ids

    def note(error, seconds):
        name = getattr(error, 'class_name', None) or error.__class__.__name__
        if args.verbose:
            print(f'conflict after {seconds:.3f} s: {str(error)[:200]!r}',
                  file=sys.stderr, flush=True)
        oid = getattr(error, 'oid', None)
        with lock:
            classes[name] = classes.get(name, 0) + 1
            if oid is not None:
                key = oid.hex()
                oids[key] = oids.get(key, 0) + 1

    def enqueue(count, seed):
        rnd = random.Random(seed)
        tm = transaction.TransactionManager()
        conn = db.open(transaction_manager=tm)
        committed, aborted, retries = [], [], []
        transactions = 0
        try:
            while len(committed) < count:
                n = min(rnd.randint(1, args.batch), count - len(committed))
                transactions += 1
                abort = transactions % args.abort_every == 0
                for attempt in range(args.retries + 1):
                    began = time.monotonic()
                    try:
                        ids = add(tm, conn, n)
                        if abort:
                            tm.abort()
                            aborted.extend(ids)
                            break
                        tm.commit()
                    except TransientError as error:
                        # A conflict, or the ZEO server went away: retry.
                        tm.abort()
                        note(error, time.monotonic() - began)
                        # A short random pause, doubling: two adders that
                        # conflicted must not meet again at once.
                        time.sleep(rnd.uniform(
                            0, min(0.5, 0.005 * 2 ** attempt)))
                        continue
                    committed.extend(ids)
                    retries.append(attempt)
                    break
                else:
                    raise RuntimeError(f'gave up after {args.retries} '
                                       'conflicting retries')
        finally:
            tm.abort()
            conn.close()
        with lock:
            results.append((committed, aborted, retries))

    start = time.monotonic()
    share = [args.jobs // args.threads] * args.threads
    share[0] += args.jobs - sum(share)
    threads = [threading.Thread(target=enqueue, args=(n, i))
               for i, n in enumerate(share)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - start
    db.close()
    if len(results) != len(threads):
        sys.exit('an enqueuing thread failed')
    retries = [r for _, _, rs in results for r in rs]
    print(json.dumps(dict(
        committed=[i for c, _, _ in results for i in c],
        aborted=[i for _, a, _ in results for i in a],
        transactions=len(retries),
        conflicts=sum(retries),
        maxRetries=max(retries),
        conflicted=sum(1 for r in retries if r),
        over3=sum(1 for r in retries if r > 3),
        classes=classes,
        oids=oids,
        elapsed=elapsed)), flush=True)


if __name__ == '__main__':
    main()
