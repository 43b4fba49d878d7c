#!/usr/bin/env python3
"""Latency of *paced* fdatasyncs: write 300 B and fdatasync every 0.5 ms (2,000/s, W3's rate).

    python3 paced_fsync.py one [DIR]   # one file
    python3 paced_fsync.py two [DIR]   # two files at once, offset by 170 µs (a queue's log + journal)

On a VM whose idle vCPUs halt, a paced fdatasync is much slower than back-to-back ones (the
disk's completion has to wake a vCPU): this measures the floor under W3's latency on a machine.
Only the fdatasync call is timed. Files are created in DIR (default /tmp) and removed.
"""
import os
import sys
import threading
import time

COUNT = 10_000
PERIOD_S = 0.0005


def run(path, latencies, offset_s):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o644)
    body = b"x" * 300
    start = time.perf_counter() + offset_s
    try:
        for i in range(COUNT):
            due = start + i * PERIOD_S
            while time.perf_counter() < due:
                time.sleep(max(0.0, due - time.perf_counter() - 0.00005))
            os.write(fd, body)
            t = time.perf_counter()
            os.fdatasync(fd)
            latencies.append(time.perf_counter() - t)
    finally:
        os.close(fd)
        os.unlink(path)


def summary(name, latencies):
    s = sorted(latencies)
    pct = " ".join(
        f"p{p}={s[max(0, int(len(s) * p / 100) - 1)] * 1e6:.0f}µs" for p in (50, 90, 99, 99.9)
    )
    over = sum(x > 0.0002 for x in s)
    print(f"{name}: {pct}  >200µs: {over} of {len(s)}")


def main():
    mode = sys.argv[1] if len(sys.argv) > 1 else "one"
    directory = sys.argv[2] if len(sys.argv) > 2 else "/tmp"
    a, b = [], []
    if mode == "one":
        run(os.path.join(directory, "paced-fsync-a"), a, 0.0)
        summary("one file", a)
        return
    threads = [
        threading.Thread(target=run, args=(os.path.join(directory, "paced-fsync-a"), a, 0.0)),
        threading.Thread(target=run, args=(os.path.join(directory, "paced-fsync-b"), b, 0.00017)),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    summary("two files, A", a)
    summary("two files, B", b)


if __name__ == "__main__":
    main()
