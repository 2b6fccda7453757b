"""A researcher's own objective without editing maebench: `--objective path/to/file.py:Class`
(the README's example, run end to end by `maebench pretrain` on a tiny checkpoint), the
`maebench.objectives` entry point, the plugin's recipe, study arms, and the one-line errors."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import benchmark.training.objectives as objectives
from benchmark.core.errors import MaebenchError
from benchmark.core.paths import EMBEDDED_DATA_DIR
from benchmark.training.objectives import check_objective, objective_class
from benchmark.training.pretrain_recipe import load_recipe
from tests.helpers.cards import tiny_card

REPO = Path(__file__).resolve().parents[1]
TINY_CORPUS = str(EMBEDDED_DATA_DIR / "tiny" / "corpus.jsonl")


@pytest.fixture(autouse=True)
def fresh_plugins(monkeypatch):
    """Loaded plugins are cached per process by name: each test starts with none."""
    monkeypatch.setattr(objectives, "_PLUGINS", {})


def readme_example() -> str:
    """The Python block of the README's "Your own objective" section: the documented example is
    the one these tests run."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("### Your own objective", 1)
    assert len(section) == 2, "README has no 'Your own objective' section"
    match = re.search(r"```python\n(.*?)```", section[1], re.S)
    assert match, "the README's 'Your own objective' section has no python example"
    return match.group(1)


def write_plugin(folder: Path, code: str, name: str = "my_objective.py") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(code, encoding="utf-8")
    return path


@pytest.mark.slow
def test_readme_plugin_through_the_cli(tiny_bert_dir, tmp_path) -> None:
    from benchmark.catalog.registry import load_card
    from benchmark.training.pretrain import write_card

    plugin = write_plugin(tmp_path / "plugins", readme_example())
    models = tmp_path / "models"
    write_card(tiny_card(tiny_bert_dir), models, overwrite=False)
    cmd = [sys.executable, "-m", "benchmark.cli", "pretrain", "--objective", f"{plugin}:ClsBow",
           "--init", "tiny-init", "--corpus", TINY_CORPUS, "--budget", "2steps", "--name",
           "tiny-clsbow", "--set", "batch_size=4", "--set", "max_length=32", "--device", "cpu",
           "--models-dir", str(models)]
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", OMP_NUM_THREADS="1",
               MAEBENCH_HOME=str(tmp_path / "home"), MAEBENCH_MODELS_DIR=str(models))
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    card = load_card(models / "tiny-clsbow.yaml")
    pre = card.pretraining
    assert pre.objective == "my_objective.py:ClsBow"  # not the path the user typed
    assert "my_objective.py:ClsBow" in card.display_name
    assert pre.steps == 2 and pre.loss_start is not None and pre.tokens_seen > 0
    assert pre.recipe["encoder_mask"] == 0.3 and pre.recipe["learning_rate"] == 1e-4  # the class's
    assert pre.recipe["batch_size"] == 4  # --set over the class's recipe over mlm's values
    assert pre.recipe["scheduler"] == load_recipe("mlm").scheduler
    assert pre.recipe_sources[0] == "my lab notebook"
    digest = hashlib.sha256(plugin.read_bytes()).hexdigest()
    assert f"file {plugin.resolve()} (sha256 {digest}), class ClsBow" in pre.recipe_sources[-1]


def test_recipe_of_a_plugin(tmp_path) -> None:
    code = readme_example()
    full = write_plugin(tmp_path, code)
    bare = write_plugin(tmp_path, code.replace("    recipe = {", "    _unused = {"), "bare.py")
    recipe = load_recipe(f"{full}:ClsBow")
    assert recipe.objective == "my_objective.py:ClsBow" and recipe.encoder_mask == 0.3
    # no `recipe` attribute: the mlm recipe's values, named for the plugin, sources kept
    plain, mlm = load_recipe(f"{bare}:ClsBow"), load_recipe("mlm")
    assert plain.objective == "bare.py:ClsBow"
    assert plain.model_dump(exclude={"objective", "sources", "published_schedule", "notes"}) == \
        mlm.model_dump(exclude={"objective", "sources", "published_schedule", "notes"})
    assert plain.sources[:-1] == mlm.sources and "bare.py" in plain.sources[-1]
    # a recipe file names the plugin by its spec or its card name
    spec_file = tmp_path / "r.yaml"
    spec_file.write_text(yaml.safe_dump({**mlm.model_dump(exclude_none=True),
                                         "objective": "my_objective.py:ClsBow", "encoder_mask": 0.4}))
    assert load_recipe(f"{full}:ClsBow", spec_file).encoder_mask == 0.4
    with pytest.raises(MaebenchError, match="recipe is for 'mlm'"):
        spec_file.write_text(yaml.safe_dump(mlm.model_dump(exclude_none=True)))
        load_recipe(f"{full}:ClsBow", spec_file)
    bad = write_plugin(tmp_path, code.replace('"learning_rate": 1e-4', '"lr": 1e-4'), "bad_recipe.py")
    with pytest.raises(MaebenchError, match=r"objective plugin bad_recipe.py:ClsBow: recipe: .*lr"):
        load_recipe(f"{bad}:ClsBow")
    odd = write_plugin(tmp_path, code.replace("    recipe = {", "    recipe = 3 or {"), "odd.py")
    with pytest.raises(MaebenchError, match="`recipe` attribute must be a dict"):
        load_recipe(f"{odd}:ClsBow")


def test_plugin_errors_are_one_line(tmp_path) -> None:
    good = readme_example()
    plain_class = "class Plain:\n    pass\n"
    function = "def f():\n    pass\n"
    bad_import = "import numpy\nimport no_such_module_xyz\n"
    cases = {
        "missing.py:ClsBow": "objective plugin .*missing.py: no such file",
        f"{write_plugin(tmp_path, good, 'a.py')}:Nope": r"a.py: no class 'Nope' \(Objective subclasses "
                                                        r"there: ClsBow\)",
        f"{write_plugin(tmp_path, plain_class, 'b.py')}:Plain":
            r"b.py: 'Plain' is not a subclass of benchmark.training.objectives.base.Objective "
            r"\(it derives from object\)",
        f"{write_plugin(tmp_path, function, 'c.py')}:f": r"c.py: 'f' is not a subclass .*"
                                                                       r"\(it is a function\)",
        f"{write_plugin(tmp_path, bad_import, 'd.py')}:X":
            r"d.py: importing it failed: ModuleNotFoundError: No module named 'no_such_module_xyz'",
        f"{write_plugin(tmp_path, 'def broken(:', 'e.py')}:X": r"e.py: importing it failed: SyntaxError",
        f"{write_plugin(tmp_path, good.replace('def forward', 'def forwards'), 'f.py')}:ClsBow":
            r"f.py: class 'ClsBow' does not implement forward",
        "pkg.module:Thing": r"unknown objective 'pkg.module:Thing' \(known: mlm, .*\); a plugin file "
                            r"is path/to/file.py:ClassName",
    }
    for spec, message in cases.items():
        with pytest.raises(MaebenchError, match=message) as caught:
            check_objective(spec)
        assert "\n" not in str(caught.value), spec
    # through the CLI: `error: ...`, one line, before any model is loaded
    raising = write_plugin(tmp_path, "raise RuntimeError('boom\\nsecond line')\n", "raising.py")
    cmd = [sys.executable, "-m", "benchmark.cli", "pretrain", "--objective", f"{raising}:X",
           "--init", "nope", "--corpus", "scifact", "--budget", "2steps", "--name", "x"]
    out = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, HF_HUB_OFFLINE="1"))
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [
        f"error: objective plugin {raising}: importing it failed: RuntimeError: boom second line"]


def test_builtins_unchanged_and_no_torch_for_names() -> None:
    assert check_objective("retromae") == "retromae"
    assert objective_class("mlm").__name__ == "MLM"
    code = ("import sys\nimport benchmark.training.objectives as o\n"
            "o.check_objective('bowpred')\nassert 'torch' not in sys.modules\n")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


def test_same_file_name_in_two_folders_stays_apart(tmp_path) -> None:
    code = readme_example()
    one = write_plugin(tmp_path / "one", code)
    two = write_plugin(tmp_path / "two", code.replace('"encoder_mask": 0.3', '"encoder_mask": 0.2'))
    assert check_objective(f"{one}:ClsBow") == "my_objective.py:ClsBow"
    assert check_objective(f"{two}:ClsBow") == f"{two}:ClsBow"  # the short name is taken
    assert objective_class(f"{one}:ClsBow") is not objective_class(f"{two}:ClsBow")
    assert load_recipe(f"{two}:ClsBow").encoder_mask == 0.2
    assert load_recipe("my_objective.py:ClsBow").encoder_mask == 0.3


def test_entry_point(tmp_path, monkeypatch) -> None:
    """A package installed with [project.entry-points."maebench.objectives"]: simulated by a
    dist-info folder on sys.path, which is what pip writes."""
    site = tmp_path / "site"
    write_plugin(site / "maebench_test_plugin", readme_example(), "__init__.py")
    info = site / "maebench_test_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: maebench-test-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        "[maebench.objectives]\nclsbow = maebench_test_plugin:ClsBow\n"
        "retromae = maebench_test_plugin:ClsBow\nbroken = maebench_test_plugin:Missing\n")
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.delitem(sys.modules, "maebench_test_plugin", raising=False)
    assert check_objective("clsbow") == "clsbow"
    assert objective_class("clsbow").__module__ == "maebench_test_plugin"
    assert objective_class("retromae").__name__ == "RetroMAE"  # a package cannot shadow a built-in
    recipe = load_recipe("clsbow")
    assert recipe.objective == "clsbow" and recipe.encoder_mask == 0.3
    assert recipe.sources[-1] == ("objective code: entry point maebench.objectives 'clsbow' = "
                                  "maebench_test_plugin:ClsBow, distribution maebench-test-plugin 0.1")
    with pytest.raises(MaebenchError, match=r"entry point 'broken' \(maebench_test_plugin:Missing\): "
                                            r"loading it failed: AttributeError"):
        check_objective("broken")
    with pytest.raises(MaebenchError, match=r"unknown objective 'x' \(known: mlm, .*simlm, broken, clsbow\)"):
        check_objective("x")
    monkeypatch.delitem(sys.modules, "maebench_test_plugin", raising=False)


def test_study_arms_accept_plugins(tmp_path) -> None:
    from benchmark.studies.spec import load_spec
    from tests.helpers.study import write_spec

    plugin = write_plugin(tmp_path / "plugins", readme_example())
    arms = [{"name": "base", "objective": None}, {"name": "mine", "objective": f"{plugin}:ClsBow"}]
    spec = load_spec(str(write_spec(tmp_path, arms=arms)))
    assert [a.objective for a in spec.arms] == [None, f"{plugin}:ClsBow"]
    arms[1]["objective"] = f"{tmp_path}/gone.py:ClsBow"
    with pytest.raises(MaebenchError, match=r"arm 'mine': objective plugin .*gone.py: no such file"):
        load_spec(str(write_spec(tmp_path, arms=arms)))
    arms[1]["objective"] = "mae"
    with pytest.raises(MaebenchError, match=r"arm 'mine': unknown objective 'mae' \(known: mlm"):
        load_spec(str(write_spec(tmp_path, arms=arms)))
