"""The `maebench` command line. Each sub-command lives in benchmark/commands/<name>.py and
registers itself; heavy libraries (torch, ranx, transformers) are imported inside the command
bodies only, so `maebench --help` stays instant."""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import pickle
import sys

import typer

COMMAND_MODULES = (
    "benchmark.commands.run",
    "benchmark.commands.catalog",
    "benchmark.commands.compare",
    "benchmark.commands.site",
    "benchmark.commands.submit",
    "benchmark.commands.reproduce",
    "benchmark.commands.mteb",
    "benchmark.commands.finetune",
    "benchmark.commands.card",
    "benchmark.commands.bundle",
    "benchmark.commands.backbone",
    "benchmark.commands.pretrain",
    "benchmark.commands.study",
    "benchmark.commands.store",
)

app = typer.Typer(
    name="maebench",
    help="Benchmark and leaderboard for MAE-pretrained dense retrievers and their baselines.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _main(verbose: bool = typer.Option(False, "--verbose", "-v", help="Log progress details.")):
    level = logging.INFO if verbose else logging.WARNING
    logging.basicConfig(level=level, format="%(levelname)s %(message)s")
    # bm25s sets its own logger to DEBUG on import; filter at the handler instead.
    for handler in logging.getLogger().handlers:
        handler.setLevel(level)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


for _module in COMMAND_MODULES:
    importlib.import_module(_module).register(app)


INTERRUPTED = "interrupted; results/ keeps what was stored before (nothing half-written)"


def _one_line(text: str) -> str:
    return " ".join(str(text).split()) or "failed"


def _interrupted(exc: BaseException) -> str:
    """What a Ctrl-C prints: the note of the step it stopped (an encode says what the embedding
    store kept) when there is one, then what results/ keeps. A command passes the note on as
    benchmark.core.errors.Interrupted; click may wrap it in an Abort, so causes are searched."""
    from benchmark.core.errors import Interrupted

    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, Interrupted | KeyboardInterrupt) and str(seen):
            return f"{str(seen).rstrip('.')}; results/ keeps what was stored before"
        seen = seen.__cause__ or seen.__context__
    return INTERRUPTED


def _fail(message: str, code: int) -> None:
    typer.echo(f"error: {_one_line(message)}", err=True)
    sys.exit(code)


def _click_classes(name: str) -> tuple[type[BaseException], ...]:
    """The class `name` of click and of typer's vendored copy of click (typer >= 0.16 raises
    typer._click exceptions, which are not click's: catching only click's let every usage
    error escape as a traceback)."""
    found = []
    for module in ("click.exceptions", "typer._click.exceptions"):
        with contextlib.suppress(ImportError, AttributeError):
            found.append(getattr(importlib.import_module(module), name))
    return tuple(found)


def main() -> None:
    """Console entry point: every failure is one `error: ...` line on stderr, never a traceback.
    User and usage errors and I/O faults exit 2, Ctrl-C 130, a bug 70 (EX_SOFTWARE, with the
    exception's type; MAEBENCH_DEBUG=1 shows the traceback)."""
    import signal

    from benchmark.core.errors import Interrupted, MaebenchError

    # A shell starts background jobs with SIGINT ignored, and Python then never raises
    # KeyboardInterrupt: restore it, so an interrupt always stops with status 130 and a line.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        code = app(standalone_mode=False)
    except MaebenchError as exc:
        _fail(str(exc), 2)
    except (Interrupted, KeyboardInterrupt, *_click_classes("Abort")) as exc:
        _fail(_interrupted(exc), 130)
    except _click_classes("Exit") as exc:
        sys.exit(exc.exit_code)
    except _click_classes("ClickException") as exc:
        if not exc.format_message():  # `maebench` alone: the help was printed
            sys.exit(2)
        command = getattr(getattr(exc, "ctx", None), "command_path", None) or "maebench"
        _fail(f"{exc.format_message()} (see '{command} --help')", 2)
    except OSError as exc:  # disk full, read-only folder, a file where a folder should be
        where = f"{exc.filename}: " if exc.filename else ""
        _fail(f"{where}{exc.strerror or type(exc).__name__}", 2)
    except (RecursionError, MemoryError) as exc:
        _fail(f"input too large or too deeply nested ({type(exc).__name__})", 2)
    except pickle.UnpicklingError as exc:  # torch.load(weights_only=True) refused a pickle
        where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
        _fail("a pickle file (.bin/.pt: weights, optimizer or trainer state) holds objects other "
              f"than plain tensors{where}; refused (maebench loads weights only, never code)", 2)
    except Exception as exc:
        if os.environ.get("MAEBENCH_DEBUG"):
            raise
        _fail(f"internal error {type(exc).__name__}: {exc} (a bug; MAEBENCH_DEBUG=1 shows the traceback)", 70)
    if code == 130:  # typer turns KeyboardInterrupt into an exit code, returned here
        _fail(INTERRUPTED, 130)
    if isinstance(code, int) and code:
        sys.exit(code)


if __name__ == "__main__":
    main()
