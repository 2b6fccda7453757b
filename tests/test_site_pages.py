"""One list of site pages (issue 29): `build_site()` from Python builds the same site, byte for
byte, as `maebench site`; every page builder renders once, with the complete navigation.

The Reproductions page used to be added by the command alone (Python builds had none), and every
extra page was rendered twice to complete the navigation.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

REPO = Path(__file__).resolve().parents[1]


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


@pytest.fixture
def small_site(tmp_path: Path) -> tuple[Path, Path]:
    """(results, models): two models on SciFact with their cards, two reported files, the
    reproduction reports and one study report, copied from the repository: every kind of page
    the site has, small enough to build in seconds."""
    source, results, models = REPO / "results", tmp_path / "results", tmp_path / "models"
    names = ("bm25", "all-minilm-l6-v2")
    studies = sorted((source / "studies").glob("*.json"), key=lambda p: (p.stat().st_size, p.name))
    reported = sorted((source / "reported").glob("*.yaml"), key=lambda p: (p.stat().st_size, p.name))
    needed = [source / n / "scifact.json" for n in names] + [REPO / "models" / f"{n}.yaml" for n in names]
    if not studies or len(reported) < 2 or not (source / "reproductions").is_dir() or \
            not all(p.is_file() for p in needed):
        pytest.skip("the repository's committed results are not here")
    for name in names:
        (results / name).mkdir(parents=True)
        for path in (source / name).glob("scifact.*"):
            shutil.copyfile(path, results / name / path.name)
    models.mkdir()
    for name in names:
        shutil.copyfile(REPO / "models" / f"{name}.yaml", models / f"{name}.yaml")
    shutil.copytree(source / "reproductions", results / "reproductions")
    (results / "reported").mkdir()
    for path in reported[:2]:
        shutil.copyfile(path, results / "reported" / path.name)
    (results / "studies").mkdir()
    shutil.copyfile(studies[0], results / "studies" / studies[0].name)
    return results, models


@pytest.mark.slow
def test_python_and_the_command_build_the_same_site(small_site, tmp_path, monkeypatch):
    from benchmark.cli import app
    from benchmark.site import SiteOptions, build_site

    monkeypatch.delenv("MAEBENCH_DATA_DIR", raising=False)  # the command's only extra input
    results, models = small_site
    # Python first: a command that registered pages as a side effect would leak them into a
    # later Python build and hide the difference
    report = build_site(SiteOptions(results_dir=results, out_dir=tmp_path / "python",
                                    models_dir=models))
    out = CliRunner().invoke(app, ["site", "--out", str(tmp_path / "cli"), "--results-dir",
                                   str(results), "--models-dir", str(models)])
    assert out.exit_code == 0, out.output
    python, command = _files(tmp_path / "python"), _files(tmp_path / "cli")
    assert sorted(python) == sorted(command)
    assert [p for p in python if python[p] != command[p]] == []
    for page in ("index.html", "studies.html", "benchmarks.html", "reproduction.html"):
        assert page in python
    assert 'href="reproduction.html">Reproductions</a>' in python["index.html"].decode()
    # the report lists every page written, the leaderboard's own and the listed builders'
    assert set(report.pages) == {p for p in python if p.endswith(".html")}
    assert f"built {len(report.pages)} pages" in out.output


@pytest.mark.slow
def test_every_builder_renders_once_with_the_whole_navigation(small_site, tmp_path, monkeypatch):
    from benchmark.site import SiteOptions, build, build_site, pages

    seen: list[tuple[str, list[str]]] = []

    def spy(builder):
        def wrapped(results_dir: Path) -> pages.Pages:
            built = builder(results_dir)

            def render(env):
                seen.append((builder.__name__, [item["href"] for item in env.globals["nav"]]))
                return built.render(env)

            return pages.Pages(nav=built.nav, render=render)

        wrapped.__name__ = builder.__name__
        return wrapped

    monkeypatch.setattr(build, "SITE_PAGES", tuple(spy(b) for b in build.SITE_PAGES))
    results, models = small_site
    build_site(SiteOptions(results_dir=results, out_dir=tmp_path / "site", models_dir=models))
    assert [name for name, _ in seen] == ["study_pages", "benchmark_pages", "reproduction_page"]
    nav = ["index.html", "tasks.html", "models.html", "reported.html", "method.html",
           "studies.html", "benchmarks.html", "reproduction.html"]
    assert all(hrefs == nav for _, hrefs in seen)


def test_two_builders_writing_one_path_is_an_error():
    import jinja2

    from benchmark.site import SiteError
    from benchmark.site.pages import Pages, render_pages

    first = Pages(nav=(("A", "a.html"),), render=lambda env: {"a.html": "a"})
    clash = Pages(nav=(("B", "b.html"),), render=lambda env: {"b.html": "b", "a.html": "b"})
    env = jinja2.Environment(autoescape=True)
    assert render_pages([first, Pages()], env) == {"a.html": "a"}
    assert env.globals["nav"] == [{"label": "A", "href": "a.html"}]
    with pytest.raises(SiteError, match="two page builders write a.html"):
        render_pages([first, clash], env)
