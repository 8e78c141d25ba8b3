"""Benchmark units on a Dask distributed cluster: ``brainmri benchmark ... --cluster tcp://SCHEDULER:8786``.

The (method, fold) units of :func:`~brainmri.runs.benchmark.run_benchmark`
are independent: each fits one method on one fold's training items and
predicts its test items. With ``--cluster`` every unit not yet in the run
folder becomes one task of a Dask cluster (:meth:`distributed.Client.submit`),
and the worker that runs it writes its unit file (``OUT/units/METHOD/FOLD.json``)
into the run folder itself, exactly as a local run does; the command then
reads the units back and computes metrics, tests and the report as usual.
So the results are those of a local run (the same splits, seeds and
code), an interrupted run resumes from the units written, and a failed
unit stops the run with its own error.

What the workers need:

- the data, the run folder (``--out``) and the feature cache
  (``--cache-dir``) at the same paths as the machine that runs the command:
  a shared filesystem (NFS, a cluster's home folders), or one machine;
- the same brainmri (and PyTorch, for deep methods) as that machine.

Without a cache folder (``--no-cache``) the features the command computed
are sent to every worker once (:meth:`distributed.Client.scatter`), which
costs memory on each; a cache folder on the shared filesystem is cheaper.
Each unit uses the threads of its worker (``dask worker --nthreads``) for
its own parallel parts, and torch as many CPU threads.

A cluster to try on one machine::

    dask scheduler                                      # prints tcp://HOST:8786
    dask worker tcp://HOST:8786 --nworkers 2 --nthreads 1
    brainmri benchmark DATA --out run/ --cluster tcp://HOST:8786

References
----------
M. Rocklin, "Dask: parallel computation with blocked algorithms and task
scheduling", Proc. 14th Python in Science Conference, 126-132, 2015.
DOI: 10.25080/Majora-7b98e3ed-013
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from brainmri.errors import ConfigError
from brainmri.files import write_json
from brainmri.models.catalog import get_method
from brainmri.runs.unit import run_unit
from brainmri.training.device import torch_threads

logger = logging.getLogger(__name__)

#: Seconds to wait for the scheduler to answer before ``--cluster`` is refused.
CONNECT_TIMEOUT_S = 5


def connect(address: str, *, timeout: float = CONNECT_TIMEOUT_S):
    """A :class:`distributed.Client` of the scheduler at ``address``.

    Raises
    ------
    ConfigError
        Dask distributed is not installed, ``address`` is malformed (no
        port, an unknown scheme), or no Dask scheduler answered at it within
        ``timeout`` seconds.
    """
    try:
        from distributed import Client
    except ImportError:
        raise ConfigError(
            "--cluster needs Dask distributed, which is not installed; install it with: pip install 'brainmri[cluster]'"
        ) from None
    from distributed.comm import parse_address
    from distributed.comm.addressing import parse_host_port
    from distributed.comm.registry import get_backend

    # A malformed address is refused before a Client starts: its error then depends on the state of the event loop
    # that earlier Clients of the process left behind.
    try:
        scheme, location = parse_address(address)
        get_backend(scheme)
        if scheme != "inproc":
            parse_host_port(location)
    except ValueError as exc:
        raise ConfigError(
            f"--cluster {address}: not a Dask scheduler address ({exc}); give the address that "
            "`dask scheduler` prints (tcp://HOST:8786)"
        ) from None
    refused = (
        f"--cluster {address}: no Dask scheduler answered within {timeout:g} s ({{}}); give the address that "
        "`dask scheduler` prints (tcp://HOST:8786), or leave out --cluster to run here"
    )
    # A peer that is not a scheduler (a web server) can keep a Client's handshake waiting for minutes, and a Client
    # that failed complains again when it is garbage-collected: ask for the peer's identity first, under a deadline.
    problem = _not_a_scheduler(address, timeout)
    if problem:
        raise ConfigError(refused.format(problem))
    try:
        return Client(address, timeout=timeout, set_as_default=False)
    # distributed raises OSError for no answer and other types for a peer that is not a Dask scheduler: both mean
    # the same to the user.
    except Exception as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError(refused.format(reason)) from None


def _not_a_scheduler(address: str, timeout: float) -> str | None:
    """Why the peer at ``address`` is not a Dask scheduler (within ``timeout`` seconds in all), or None when it is one.

    Sends Dask's ``identity`` request over one connection and reads the
    answer, all under one deadline; a scheduler answers with its type.
    """
    import asyncio

    from distributed.comm import connect as open_comm

    async def identity():
        comm = await open_comm(address, timeout=timeout)
        try:
            await comm.write({"op": "identity", "reply": True})
            return await comm.read()
        finally:
            comm.abort()

    try:
        answer = asyncio.run(asyncio.wait_for(identity(), timeout))
    except TimeoutError:
        return "no answer in time"
    except OSError as exc:
        return " ".join(str(exc).split()) or type(exc).__name__
    except Exception as exc:  # a peer speaking another protocol makes Dask's reader fail in many ways
        return f"the peer does not speak Dask's protocol: {type(exc).__name__}"
    if not isinstance(answer, dict) or answer.get("type") != "Scheduler":
        return f"the peer is not a Dask scheduler (it answered {str(answer)[:60]!r})"
    return None


def _run_on_worker(config, plan, method: str, split, *, n_jobs: int, cache_dir, device: str, path: Path) -> dict:
    """:func:`~brainmri.runs.benchmark.run_unit` on a worker; the unit is written to ``path`` there."""
    from contextlib import nullcontext

    from distributed import get_worker

    worker = get_worker()
    threads = worker.state.nthreads
    if get_method(method).family == "deep":
        threads_context = torch_threads(threads)
    else:
        threads_context = nullcontext()
    with threads_context:
        unit = run_unit(
            config,
            plan,
            method,
            split,
            n_jobs=threads if n_jobs < 1 else n_jobs,
            cache_dir=cache_dir,
            work_dir=path.with_suffix(".work"),
            device=device,
        )
    write_json(path, unit)
    return {"fit_s": unit["fit_s"], "predict_s": unit["predict_s"], "worker": worker.address}


def run_units(
    client,
    config,
    plan,
    todo: list[tuple[str, object, Path, str]],
    *,
    n_jobs: int,
    cache_dir,
    device: str,
    say: Callable[[str], None],
) -> None:
    """Run the units ``todo`` (method, split, unit file, description) on the cluster of ``client``.

    Each finished unit is written by its worker and announced through
    ``say``, in the order they finish. The first unit that fails stops
    the others (those finished stay written) and its error is raised here.
    """
    from distributed import as_completed

    if not todo:
        return
    say(
        f"running {len(todo)} unit(s) on the Dask cluster {client.scheduler.address} ({len(client.nthreads())} workers)"
    )
    shared_plan, shared_cache = client.scatter([plan, cache_dir], broadcast=True)
    futures = {
        client.submit(
            _run_on_worker,
            config,
            shared_plan,
            method,
            split,
            n_jobs=n_jobs,
            cache_dir=shared_cache,
            device=device,
            path=path,
            pure=False,
        ): where
        for method, split, path, where in todo
    }
    try:
        for future in as_completed(futures, loop=client.loop):
            done = future.result()
            say(f"{futures[future]}: fit {done['fit_s']:.1f}s, predict {done['predict_s']:.1f}s on {done['worker']}")
    finally:  # after a failure (or Ctrl-C) the rest is cancelled; a unit already running still writes its file
        client.cancel([future for future in futures if not future.done()])
