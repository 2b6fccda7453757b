"""The `maebench` command line. Each sub-command lives in benchmark/commands/<name>.py and
registers itself; heavy libraries (torch, ranx, transformers) are imported inside the command
bodies only, so `maebench --help` stays instant."""

from __future__ import annotations

import importlib
import logging
import os
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


def main() -> None:
    """Console entry point: user errors become one line on stderr and exit status 2."""
    from benchmark.errors import MaebenchError

    try:
        app(standalone_mode=False)
    except MaebenchError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        typer.echo("interrupted; results/ was left unchanged", err=True)
        sys.exit(130)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        sys.exit(1)
    except Exception as exc:  # click usage errors etc.
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        raise


if __name__ == "__main__":
    main()
