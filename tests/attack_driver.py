"""Runs attack cases through `benchmark.cli.main` in one process and prints one JSON line per
case (exit status, stderr lines). The parent test (tests/test_attack.py) runs this in a
subprocess so a native crash (a signal) is seen as such instead of killing pytest.

Each case is {"id", "argv", "env": {...}, "fault": name|null}; a fault is injected in this
process only (an interrupt or a full disk at a given point), from the fixed table below.
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import sys


def _raise(exc: BaseException):
    def fail(*_args, **_kwargs):
        raise exc

    return fail


def _inject(fault: str | None, stack: contextlib.ExitStack) -> None:
    from unittest import mock

    if fault is None:
        return
    if fault == "interrupt-run":
        stack.enter_context(mock.patch("benchmark.pipeline.runner.evaluate", _raise(KeyboardInterrupt())))
    elif fault == "interrupt-submit":
        stack.enter_context(
            mock.patch("benchmark.submission.submit.validate_bundle", _raise(KeyboardInterrupt())))
    elif fault == "interrupt-commit":
        stack.enter_context(mock.patch("benchmark.results.result_store._step", _raise(KeyboardInterrupt())))
    elif fault == "interrupt-site":
        stack.enter_context(mock.patch("benchmark.results.result_store.iter_results",
                                       _raise(KeyboardInterrupt())))
        stack.enter_context(
            mock.patch("benchmark.comparison.compare.iter_results", _raise(KeyboardInterrupt())))
    elif fault == "enospc":
        stack.enter_context(mock.patch(
            "benchmark.results.result_store.os.fsync",
            _raise(OSError(errno.ENOSPC, "No space left on device"))
        ))
    elif fault == "eio-read":
        stack.enter_context(mock.patch(
            "benchmark.results.result_store._sha256_file", _raise(OSError(errno.EIO, "Input/output error"))
        ))
    elif fault == "claim-held":  # another process is computing (bm25, tiny) right now
        from pathlib import Path

        from benchmark.results.result_store import ResultStore

        store = ResultStore(Path(os.environ["MAEBENCH_RESULTS_DIR"]))
        stack.enter_context(store.claim("bm25", "tiny", overwrite=True))
    else:
        raise SystemExit(f"unknown fault {fault}")


def run_case(case: dict) -> dict:
    from benchmark import cli

    out, err = io.StringIO(), io.StringIO()
    saved_env = dict(os.environ)
    os.environ.update(case.get("env", {}))
    code: int | str = 0
    import time

    started = time.perf_counter()
    import logging

    for handler in logging.root.handlers[:]:  # the CLI's basicConfig binds a handler to the
        logging.root.removeHandler(handler)   # stderr of its first call: rebind it per case
    try:
        with contextlib.ExitStack() as stack:
            _inject(case.get("fault"), stack)
            stack.enter_context(contextlib.redirect_stdout(out))
            stack.enter_context(contextlib.redirect_stderr(err))
            sys.argv = ["maebench", *case["argv"]]
            try:
                cli.main()
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
            except BaseException as exc:  # escaped main(): a crash
                code = f"escaped {type(exc).__name__}: {exc}"[:300]
    finally:
        os.environ.clear()
        os.environ.update(saved_env)
    return {"id": case["id"], "code": code, "stderr": err.getvalue()[-4000:],
            "seconds": round(time.perf_counter() - started, 2)}


def main() -> None:
    with open(sys.argv[1], encoding="utf-8") as handle:
        cases = json.load(handle)
    for case in cases:
        print(json.dumps(run_case(case)), flush=True)


if __name__ == "__main__":
    main()
