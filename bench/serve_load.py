"""Latency, concurrency and memory of ``brainmri serve`` against localhost (issue 12's targets).

Starts ``brainmri serve MODEL`` as a child process on a free port, waits
for ``/health``, then measures, with one 224 x 224 slice:

1. the median (and p90) latency of ``POST /predict`` without and with the
   heatmap, requests one after another (after a few warm-up requests);
2. ``--clients`` concurrent clients (threads, one HTTP connection each)
   posting for ``--duration`` seconds: requests, failures (any status other
   than 200, or a transport error), throughput, median and p99 latency;
3. the server's resident memory (``VmRSS`` of its process) every 100 of
   ``--memory-requests`` further requests (every tenth with a heatmap).

The clients share the machine with the server (2 cores here), so the
latencies include their own cost; run it on an otherwise quiet machine and
report the load average beside the figures.

Usage: python bench/serve_load.py MODEL [--image slice.png] [--requests 50] [--clients 20] [--duration 30]
                                        [--memory-requests 1000] [--json out.json]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("model", type=Path, help="bundle folder (brainmri train)")
    parser.add_argument("--image", type=Path, help="the slice to send (default: a synthetic 224 x 224 glioma slice)")
    parser.add_argument("--requests", type=int, default=50, help="sequential requests per latency figure")
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--duration", type=float, default=30.0, help="seconds of the concurrent run")
    parser.add_argument("--memory-requests", type=int, default=1000)
    parser.add_argument("--serve-args", default="", help="more options of brainmri serve, e.g. '--workers 2'")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args()

    import httpx

    image = args.image.read_bytes() if args.image else _synthetic_png()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    command = [
        sys.executable,
        "-m",
        "brainmri",
        "serve",
        str(args.model),
        "--port",
        str(port),
        "-q",
        *args.serve_args.split(),
    ]
    server = subprocess.Popen(command)
    figures: dict = {"command": " ".join(command), "load_average_before": os.getloadavg()}
    try:
        _wait_for(url, server)
        files = {"files": ("slice.png", image, "image/png")}
        with httpx.Client(base_url=url, timeout=60) as client:
            for heatmap in ("false", "true"):
                times = [_post(client, heatmap, files)[1] for _ in range(3 + args.requests)][3:]
                figures[f"latency_ms_heatmap_{heatmap}"] = _summary(times)
                print(f"POST /predict heatmap={heatmap}: {_line(figures[f'latency_ms_heatmap_{heatmap}'])}", flush=True)
        figures["concurrent"] = _concurrent(url, files, args.clients, args.duration)
        c = figures["concurrent"]
        print(
            f"{args.clients} clients for {args.duration:g} s: {c['requests']} requests, {c['failures']} failed "
            f"({c['statuses']}), {c['per_s']:.1f} requests/s, {_line(c['latency_ms'])}",
            flush=True,
        )
        figures["memory_mb"] = _memory(url, files, server.pid, args.memory_requests)
        m = figures["memory_mb"]
        print(
            f"server RSS over {args.memory_requests} requests (MB, every 100): {m['rss']}; growth after the first "
            f"100: {m['growth_after_warmup']:+.1f} MB",
            flush=True,
        )
    finally:
        server.terminate()
        server.wait(30)
    figures["load_average_after"] = os.getloadavg()
    print(f"load average before {figures['load_average_before']}, after {figures['load_average_after']}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


def _synthetic_png() -> bytes:
    import numpy as np
    from PIL import Image

    from brainmri.data.synthetic import synthetic_slice

    buffer = io.BytesIO()
    array = (synthetic_slice("glioma", np.random.default_rng(0), size=224) * 255).round().astype(np.uint8)
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def _wait_for(url: str, server: subprocess.Popen, timeout: float = 120.0) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"brainmri serve exited with status {server.returncode}")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"brainmri serve did not answer {url}/health within {timeout:g} s")


def _post(client, heatmap: str, files: dict) -> tuple[int, float]:
    start = time.perf_counter()
    response = client.post(f"/predict?heatmap={heatmap}", files=files)
    return response.status_code, 1000 * (time.perf_counter() - start)


def _summary(times: list[float]) -> dict:
    ordered = sorted(times)
    return {
        "n": len(ordered),
        "median": round(statistics.median(ordered), 1),
        "p90": round(ordered[int(0.9 * (len(ordered) - 1))], 1),
        "p99": round(ordered[int(0.99 * (len(ordered) - 1))], 1),
        "max": round(ordered[-1], 1),
    }


def _line(s: dict) -> str:
    return f"median {s['median']} ms, p90 {s['p90']} ms, p99 {s['p99']} ms, max {s['max']} ms (n={s['n']})"


def _concurrent(url: str, files: dict, clients: int, duration: float) -> dict:
    import httpx

    times, statuses, lock = [], {}, threading.Lock()
    stop = time.monotonic() + duration

    def client_loop():
        with httpx.Client(base_url=url, timeout=120) as client:
            while time.monotonic() < stop:
                try:
                    status, ms = _post(client, "false", files)
                except httpx.TransportError as exc:
                    status, ms = type(exc).__name__, None
                with lock:
                    statuses[str(status)] = statuses.get(str(status), 0) + 1
                    if status == 200:
                        times.append(ms)

    start = time.monotonic()
    threads = [threading.Thread(target=client_loop) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - start
    total = sum(statuses.values())
    return {
        "clients": clients,
        "seconds": round(elapsed, 1),
        "requests": total,
        "failures": total - statuses.get("200", 0),
        "statuses": statuses,
        "per_s": total / elapsed,
        "latency_ms": _summary(times),
    }


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise SystemExit(f"no VmRSS for process {pid}")


def _memory(url: str, files: dict, pid: int, n: int) -> dict:
    import httpx

    rss, failures = [round(_rss_mb(pid), 1)], 0
    with httpx.Client(base_url=url, timeout=60) as client:
        for k in range(1, n + 1):
            status, _ = _post(client, "true" if k % 10 == 0 else "false", files)
            failures += status != 200
            if k % 100 == 0:
                rss.append(round(_rss_mb(pid), 1))
    return {
        "requests": n,
        "failures": failures,
        "rss": rss,
        "growth_after_warmup": rss[-1] - rss[1] if len(rss) > 1 else 0.0,
    }


if __name__ == "__main__":
    main()
