"""`maebench store ls | du | rm`: see and free the embedding store."""

from __future__ import annotations

from pathlib import Path

import typer


def _human(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def _cell(value: object, width: int = 20) -> str:
    """A key.json value as one printable cell: key.json is read from disk, so a newline, a tab
    or a terminal escape in it is shown escaped, never acted on."""
    text = "?" if value is None else str(value)
    return "".join(c if c.isprintable() and c != "\t" else repr(c)[1:-1] for c in text)[:width]


def _store(root: Path | None):
    from benchmark.core.paths import embeddings_dir
    from benchmark.embeddings.embedding_store import EmbeddingStore

    return EmbeddingStore(root or embeddings_dir())


def register(app: typer.Typer) -> None:
    store_app = typer.Typer(help="The embedding store: list, size and remove stored vectors.",
                            no_args_is_help=True)
    app.add_typer(store_app, name="store")
    root_option = typer.Option(None, "--root", help="Store folder (default $MAEBENCH_HOME/embeddings).")

    @store_app.command("ls")
    def ls(root: Path | None = root_option) -> None:
        """One line per entry: id, role, shards done/total, size, weights and texts."""
        entries = _store(root).entries()
        if not entries:
            typer.echo(f"(empty: {_store(root).root})")
            return
        typer.echo("entry\trole\tshards\tsize\tdtype\tweights\ttexts")
        for e in entries:
            key = e.key
            typer.echo(
                f"{e.folder.name}\t{_cell(key.get('role'))}\t{e.shards_done}/{e.shards_total or '?'}\t"
                f"{_human(e.nbytes)}\t{_cell(key.get('store_dtype'))}\t"
                f"{_cell(key.get('weights'), 40)}\t{_cell(key.get('texts'), 12)}"
            )

    @store_app.command("du")
    def du(root: Path | None = root_option) -> None:
        """Total size of the store, and how many entries are complete."""
        entries = _store(root).entries()
        total = sum(e.nbytes for e in entries)
        done = sum(1 for e in entries if e.shards_total and e.shards_done == e.shards_total)
        typer.echo(f"{_human(total)}\t{len(entries)} entries ({done} complete)\t{_store(root).root}")

    @store_app.command("rm")
    def rm(
        entries: list[str] = typer.Argument(None, help="Entry ids (or unique prefixes) to remove."),
        all_entries: bool = typer.Option(False, "--all", help="Remove every entry."),
        incomplete: bool = typer.Option(False, "--incomplete", help="Remove unfinished entries."),
        yes: bool = typer.Option(False, "--yes", help="Needed with --all."),
        root: Path | None = root_option,
    ) -> None:
        """Remove entries (the next run that needs them encodes again)."""
        from benchmark.core.errors import MaebenchError

        store = _store(root)
        if all_entries and not yes:
            raise MaebenchError("store rm --all removes every stored vector; add --yes")
        if all_entries or incomplete:
            if entries:
                raise MaebenchError("give entry ids or --all / --incomplete, not both")
            chosen = [e.folder for e in store.entries()
                      if all_entries or not (e.shards_total and e.shards_done == e.shards_total)]
        else:
            if not entries:
                raise MaebenchError("name the entries to remove (see `maebench store ls`) or --all")
            chosen = []
            for prefix in entries:
                found = store.find(prefix)
                if len(found) != 1:
                    what = "no entry" if not found else f"{len(found)} entries"
                    raise MaebenchError(f"'{prefix}' matches {what} in {store.root}")
                chosen.append(found[0])
        freed = sum(store.remove(folder) for folder in chosen)
        typer.echo(f"removed {len(chosen)} entries, freed {_human(freed)}")
