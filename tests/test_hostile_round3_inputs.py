"""Hostile input, round 3 (issue 27): numbers that are not numbers (class 3), objective plug-ins
(class 4), backbone specs and corpora (class 7) and `--out` folders inside maebench's own
databases (class 6, in part).

Every CLI case runs through tests/attack_driver.py in one subprocess, as the main attack suite
does, and must end in exactly one `error:` line with exit status 2: no traceback, no
`internal error`, no card, nothing written into the results or models folders or the home.
The plug-in adapters (checked_forward / checked_corrupt) and the vocabulary learner are tested
directly: they sit below any command.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

import benchmark.training.objectives as objectives
from benchmark.core.errors import MaebenchError
from benchmark.core.paths import EMBEDDED_DATA_DIR

REPO = Path(__file__).resolve().parents[1]
TINY_CORPUS = str(EMBEDDED_DATA_DIR / "tiny" / "corpus.jsonl")
HUGE = "1" + "0" * 400  # a 400-digit integer
SMALL_SIZE = ["--vocab-size", "300", "--layers", "2", "--hidden", "32", "--heads", "2", "--ffn", "64",
              "--max-positions", "64"]


@pytest.fixture(autouse=True)
def fresh_plugins(monkeypatch):
    """Loaded plug-ins are cached per process: each test starts with none."""
    monkeypatch.setattr(objectives, "_PLUGINS", {})


def plugin_source(recipe: str = '{"encoder_mask": 0.3}', marker: str | None = None) -> str:
    """A minimal objective plug-in (its loss: the squared weights of whatever encoder it gets)
    with subclasses that misbehave in one way each."""
    lines = ["import torch", "from benchmark.training.objectives.base import Objective", ""]
    if marker:
        lines += [f"open({marker!r}, 'w').write('plug-in code ran')", ""]
    lines += [
        "class Good(Objective):",
        f"    recipe = {recipe}",
        "    def corrupt(self, pairs, rng):",
        "        return {'attention_mask': torch.ones(1, 2, dtype=torch.long)}",
        "    def forward(self, batch):",
        "        loss = sum((p ** 2).sum() for p in self.encoder.parameters())",
        "        return loss, {'squares': loss.detach()}",
        "",
        "class Raises(Good):",
        "    def forward(self, batch):",
        "        raise ValueError('boom\\nsecond line')",
        "",
        "class ReturnsFloat(Good):",
        "    def forward(self, batch):",
        "        return 1.5",
        "",
        "class NanLoss(Good):",
        "    def forward(self, batch):",
        "        loss, parts = super().forward(batch)",
        "        return loss * float('nan'), parts",
        "",
        "class Detached(Good):",
        "    def forward(self, batch):",
        "        loss, parts = super().forward(batch)",
        "        return loss.detach(), parts",
        "",
        "class TextParts(Good):",
        "    def forward(self, batch):",
        "        loss, _ = super().forward(batch)",
        "        return loss, {'squares': 'many'}",
        "",
        "class ListParts(Good):",
        "    def forward(self, batch):",
        "        loss, _ = super().forward(batch)",
        "        return loss, [1.0]",
        "",
        "class CorruptRaises(Good):",
        "    def corrupt(self, pairs, rng):",
        "        return {}['attention_mask']",
        "",
        "class CorruptList(Good):",
        "    def corrupt(self, pairs, rng):",
        "        return [torch.ones(2)]",
        "",
    ]
    return "\n".join(lines)


# --------------------------------------------------------------------------- the CLI cases


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("round3")
    models, results, home = root / "models", root / "results", root / "home"
    models.mkdir()
    results.mkdir()
    home.mkdir()
    shutil.copy(REPO / "models" / "bm25.yaml", models / "bm25.yaml")
    (root / "other-results").mkdir()
    (root / "into-results").symlink_to(results)
    (root / "whitespace.jsonl").write_text("".join(
        json.dumps({"_id": f"d{i}", "title": " ", "text": " \t\n " * 50}) + "\n" for i in range(200)))
    (root / "short.jsonl").write_text(json.dumps({"_id": "d1", "text": "hello world"}) + "\n")
    (root / "inf_rate.py").write_text(plugin_source('{"learning_rate": float("inf")}'))
    spec = {"id": "r3", "description": "x", "init": "tiny-init", "corpus": "tiny", "budget_tokens": 512,
            "pretrain_overrides": {"batch_size": 4, "max_length": 32},
            "arms": [{"name": "base", "objective": None},
                     {"name": "mine", "objective": f"{root / 'inf_rate.py'}:Good"}],
            "seeds": [0], "finetune": {"task": "tiny", "recipe": "standard-cpu"},
            "evaluate": ["tiny"], "baseline_arm": "base"}
    (root / "plugin-inf.yaml").write_text(yaml.safe_dump(spec))
    arms = [{"name": "base", "objective": None}, {"name": "mlm", "objective": "mlm"}]
    big = {**spec, "arms": arms, "init": None,
           "backbone": {"corpus": "tiny", "ffn": 10**11}}
    (root / "backbone-ffn.yaml").write_text(yaml.safe_dump(big))
    inf_arm = {**spec, "arms": [arms[0], {**arms[1], "overrides": {"learning_rate": float("inf")}}]}
    (root / "arm-inf.yaml").write_text(yaml.safe_dump(inf_arm))
    return {"root": root, "models": models, "results": results, "home": home}


def cases(ws: dict[str, Path]) -> list[dict]:
    root, models, results = ws["root"], str(ws["models"]), ws["results"]
    pretrain = ["pretrain", "--objective", "mlm", "--init", "bm25", "--corpus", TINY_CORPUS,
                "--name", "r3-x", "--models-dir", models]
    study = ["study", "scratch-mae", "--report-only", "--set", "id=r3-evil"]
    found: list[dict] = []

    def add(cls: int, name: str, argv: list[str], match: str) -> None:
        found.append({"id": name, "cls": cls, "argv": argv, "match": match})

    # 3: numbers that are not numbers, in every place a number is read
    add(3, "pretrain-lr-inf", [*pretrain, "--budget", "2steps", "--set", "learning_rate=inf"],
        "field learning_rate: Input should be a finite number")
    add(3, "pretrain-lr-nan", [*pretrain, "--budget", "2steps", "--set", "learning_rate=nan"],
        "field learning_rate: Input should be a finite number")
    add(3, "pretrain-lr-negative", [*pretrain, "--budget", "2steps", "--set", "learning_rate=-1"],
        "field learning_rate: Input should be greater than 0")
    add(3, "pretrain-mask-1e400", [*pretrain, "--budget", "2steps", "--set", "encoder_mask=1e400"],
        "field encoder_mask: Input should be a finite number")
    add(3, "pretrain-batch-400-digits", [*pretrain, "--budget", "2steps", "--set", f"batch_size={HUGE}"],
        "field batch_size: Input should be less than or equal to")
    add(3, "pretrain-budget-400-digits", [*pretrain, "--budget", HUGE],
        "is too large to be a number of steps or tokens")
    add(3, "pretrain-budget-400-digit-steps", [*pretrain, "--budget", f"{HUGE} steps"],
        "is too large to be a number of steps or tokens")
    add(3, "pretrain-budget-3G-steps", [*pretrain, "--budget", "3Gsteps"], "optimizer steps, more than")
    add(3, "pretrain-accumulation-400-digits", [*pretrain, "--budget", "2steps", "--accumulation", HUGE],
        "--accumulation 1000")
    add(3, "pretrain-plugin-recipe-inf",
        [*pretrain[:2], f"{root / 'inf_rate.py'}:Good", *pretrain[3:], "--budget", "2steps"],
        "objective plugin inf_rate.py:Good: recipe: field learning_rate: Input should be a finite number")
    add(3, "finetune-lr-inf", ["finetune", "--model", "bm25", "--task", "tiny", "--recipe",
                               "standard-cpu", "--set", "lr=inf"],
        "field lr: Input should be a finite number")
    add(3, "finetune-max-steps-400-digits", ["finetune", "--model", "bm25", "--task", "tiny", "--recipe",
                                             "standard-cpu", "--set", f"max_steps={HUGE}"],
        "field max_steps: Input should be less than or equal to")
    add(3, "study-scale-inf", [*study, "--set", "scale=inf"], "field scale: Input should be a finite number")
    add(3, "study-scale-nan", [*study, "--set", "scale=nan"], "field scale: Input should be a finite number")
    add(3, "study-seeds-not-yaml", [*study, "--set", "seeds=[0"], "--set seeds=[0: not a YAML value")
    add(3, "study-budget-400-digits", [*study, "--set", f"budget_tokens={HUGE}"],
        "field budget_tokens: Input should be less than or equal to")
    add(3, "study-override-yaml-inf", [*study, "--set", "pretrain_overrides={learning_rate: .inf}"],
        "field pretrain_overrides.learning_rate: Value error, not a finite number")
    add(3, "study-override-text-inf", [*study, "--set", "pretrain_overrides={learning_rate: inf}"],
        "recipe overrides: field learning_rate: Input should be a finite number")
    add(3, "study-finetune-lr-inf", [*study, "--set", "finetune.overrides={lr: .inf}"],
        "field finetune.overrides.lr: Value error, not a finite number")
    add(3, "study-finetune-lr-text-inf", [*study, "--set", "finetune.overrides={lr: inf}"],
        "with --set lr=inf: field lr: Input should be a finite number")
    add(3, "study-pilot-rate-5", [*study, "--set", "finetune.pilot={arm: mlm, learning_rates: [0.001, 5]}"],
        "pilot learning rate 5.0: recipe scratch-cosine with --set lr=5.0: field lr: Input should be less")
    add(3, "study-pilot-rate-nan",
        [*study, "--set", "finetune.pilot={arm: mlm, learning_rates: [0.001, .nan]}"],
        "field finetune.pilot.learning_rates.1: Input should be a finite number")
    add(3, "study-plugin-recipe-inf", ["study", str(root / "plugin-inf.yaml"), "--report-only"],
        "arm 'mine': objective plugin inf_rate.py:Good: recipe: field learning_rate: Input should be "
        "a finite number")
    add(3, "study-arm-override-inf", ["study", str(root / "arm-inf.yaml"), "--report-only"],
        "field arms.1.overrides.learning_rate: Value error, not a finite number")
    add(3, "study-backbone-ffn", ["study", str(root / "backbone-ffn.yaml"), "--report-only"],
        "backbone size: ffn 100000000000 (1..1048576)")
    # 7: backbones
    backbone = ["backbone", "new", "r3-bb", "--models-dir", models]
    add(7, "backbone-whitespace-corpus", [*backbone, "--corpus", str(root / "whitespace.jsonl"), *SMALL_SIZE],
        "too little text to learn a vocabulary: 0 words")
    add(7, "backbone-two-words", [*backbone, "--corpus", str(root / "short.jsonl"), *SMALL_SIZE],
        "too little text to learn a vocabulary: 2 words (at least 1000)")
    add(7, "backbone-ffn-1e11", [*backbone, "--corpus", TINY_CORPUS, "--ffn", "100000000000"],
        "backbone size: ffn 100000000000 (1..1048576)")
    add(7, "backbone-hidden-400-digits", [*backbone, "--corpus", TINY_CORPUS, "--hidden", HUGE],
        "backbone size: hidden 100000000000...(401 digits)")
    add(7, "backbone-too-big-for-memory",
        [*backbone, "--corpus", TINY_CORPUS, "--layers", "48", "--hidden", "16384", "--heads", "16",
         "--ffn", "1048576"], "GiB of memory to build and save")
    # 6: --out inside maebench's own folders
    add(6, "bundle-out-in-results", ["bundle", "--model", "bm25", "--out", str(results / "bm25-copy")],
        "lies in the results database")
    add(6, "bundle-out-is-models", ["bundle", "--model", "bm25", "--out", models],
        "lies in the models folder")
    add(6, "bundle-out-through-a-link", ["bundle", "--model", "bm25", "--out",
                                         str(root / "into-results" / "b")], "lies in the results database")
    add(6, "site-out-in-results", ["site", "--out", str(results / "site")], "lies in the results database")
    add(6, "site-out-in-models", ["site", "--out", str(ws["models"] / "site")], "lies in the models folder")
    add(6, "site-out-in-home-weights", ["site", "--out", str(ws["home"] / "checkpoints" / "s")],
        "lies in the trained-weights folder")
    add(6, "export-mteb-out-in-results", ["export-mteb", "--out", str(results / "mteb")],
        "lies in the results database")
    add(6, "export-mteb-out-in-given-results",
        ["export-mteb", "--results-dir", str(root / "other-results"), "--out",
         str(root / "other-results" / "mteb")], "lies in the results database")
    return found


def _tree(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): (hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file()
                                         else "<dir>")
            for p in sorted(folder.rglob("*")) if ".maebench" not in p.parts}


@pytest.mark.slow
def test_every_round3_attack_is_one_error_line(workspace):
    ws = workspace
    found = cases(ws)
    file = ws["root"] / "cases.json"
    file.write_text(json.dumps(found))
    before = {k: _tree(ws[k]) for k in ("models", "results", "home")}
    env = {**os.environ, "MAEBENCH_RESULTS_DIR": str(ws["results"]), "MAEBENCH_MODELS_DIR": str(ws["models"]),
           "MAEBENCH_HOME": str(ws["home"]), "HF_HUB_OFFLINE": "1",
           "MAEBENCH_DATA_DIR": str(ws["root"] / "no-data"), "MAEBENCH_BACKEND": "torch"}
    env.pop("MAEBENCH_DEBUG", None)
    proc = subprocess.run([sys.executable, "-m", "tests.attack_driver", str(file)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)
    outcomes = {row["id"]: row for row in map(json.loads, (
        line for line in proc.stdout.splitlines() if line.startswith("{")))}
    bad = {}
    for case in found:
        row = outcomes.get(case["id"])
        if row is None:
            bad[case["id"]] = f"no outcome (driver exit {proc.returncode}: {proc.stderr[-300:]})"
            continue
        lines = [line for line in row["stderr"].splitlines() if line.strip()]
        if row["code"] != 2 or len(lines) != 1 or not lines[0].startswith("error: ") \
                or case["match"] not in lines[0] or "internal error" in lines[0]:
            bad[case["id"]] = [row["code"], lines[-5:]]
        elif row["seconds"] > 60:
            bad[case["id"]] = f"took {row['seconds']} s"
    assert not bad, json.dumps(bad, indent=1)
    assert {k: _tree(ws[k]) for k in ("models", "results", "home")} == before
    assert not (ws["root"] / "other-results" / "mteb").exists()
    assert {c["cls"] for c in found} == {3, 6, 7}


# --------------------------------------------------------------------------- 4: plug-ins


def _instance(spec: str):
    import torch

    encoder = torch.nn.Linear(2, 1)
    encoder.config = SimpleNamespace(vocab_size=10)
    return objectives.objective_class(spec)(encoder, torch.nn.Identity(), None, {})


@pytest.fixture
def plugin_file(tmp_path) -> Path:
    path = tmp_path / "lab" / "obj.py"
    path.parent.mkdir()
    path.write_text(plugin_source())
    return path


def test_a_plugin_forward_that_misbehaves_is_one_line_naming_it(plugin_file):
    from benchmark.training.objectives import checked_corrupt, checked_forward

    where = f"objective plugin obj.py:%s (file {plugin_file.resolve()})"
    expected = {
        "Raises": "forward raised ValueError: boom second line",
        "ReturnsFloat": "forward must return a (loss tensor, parts dict) pair; it returned a float",
        "NanLoss": "the loss is nan (not finite); training stopped, no card written",
        "Detached": "its loss depends on no trainable weight",
        "TextParts": "forward's parts must map names to finite numbers; 'squares' is a str",
        "ListParts": "forward's second value must be a dict of named loss terms; it is a list of 1",
    }
    for cls, message in expected.items():
        model = _instance(f"{plugin_file}:{cls}")
        with pytest.raises(MaebenchError) as caught:
            checked_forward(model, {})
        text = str(caught.value)
        assert text.startswith(where % cls + ": ") and message in text, text
        assert "\n" not in text
    loss, parts = checked_forward(_instance(f"{plugin_file}:Good"), {})
    assert loss.requires_grad and parts == {"squares": pytest.approx(float(loss.detach()))}
    for cls, message in {"CorruptRaises": "corrupt raised KeyError: 'attention_mask'",
                         "CorruptList": "corrupt must return a dict of named tensors; it returned a list"
                         }.items():
        with pytest.raises(MaebenchError, match=message):
            checked_corrupt(_instance(f"{plugin_file}:{cls}"), [], None)
    assert set(checked_corrupt(_instance(f"{plugin_file}:Good"), [], None)) == {"attention_mask"}


def test_a_builtin_objective_stays_maebench_own_but_a_nan_loss_stops_it():
    import torch

    from benchmark.training.objectives import checked_forward
    from benchmark.training.objectives.base import Objective

    class Broken(Objective):  # not a plug-in: its exceptions are maebench's bugs and propagate
        name = "broken"

        def forward(self, batch):
            if batch.get("nan"):
                return self.encoder.weight.sum() * float("nan"), {"x": 1.0}
            raise ZeroDivisionError("a bug")

    encoder = torch.nn.Linear(2, 1)
    encoder.config = SimpleNamespace(vocab_size=10)
    model = Broken(encoder, torch.nn.Identity(), None, {})
    with pytest.raises(ZeroDivisionError):
        checked_forward(model, {})
    with pytest.raises(MaebenchError, match=r"^objective 'broken': the loss is nan"):
        checked_forward(model, {"nan": True})


def test_plugins_are_keyed_by_resolved_file(tmp_path, monkeypatch):
    """`plugins/obj.py:C` and `obj.py:C` (another file) are two plug-ins in either order, and
    each recipe's sources record its own file and digest."""
    from benchmark.training.objectives import check_objective, objective_class
    from benchmark.training.pretrain_recipe import load_recipe

    (tmp_path / "plugins").mkdir()
    inner, outer = tmp_path / "plugins" / "obj.py", tmp_path / "obj.py"
    inner.write_text(plugin_source('{"encoder_mask": 0.3}'))
    outer.write_text(plugin_source('{"encoder_mask": 0.2}'))
    monkeypatch.chdir(tmp_path)
    for order in (["plugins/obj.py:Good", "obj.py:Good"], ["obj.py:Good", "plugins/obj.py:Good"]):
        monkeypatch.setattr(objectives, "_PLUGINS", {})
        names = {spec: check_objective(spec) for spec in order}
        assert names == {"plugins/obj.py:Good": "plugins/obj.py:Good", "obj.py:Good": "obj.py:Good"}
        assert objective_class("obj.py:Good") is not objective_class("plugins/obj.py:Good")
        for spec, path, mask in (("plugins/obj.py:Good", inner, 0.3), ("obj.py:Good", outer, 0.2)):
            recipe = load_recipe(names[spec])
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            assert recipe.encoder_mask == mask
            assert recipe.sources[-1] == \
                f"objective code: file {path.resolve()} (sha256 {digest}), class Good"


@pytest.mark.slow
def test_a_bare_spec_name_never_reads_the_working_directory(tmp_path, monkeypatch):
    """A file named `scratch-mae` in the current directory does not replace the bundled spec,
    and the plug-in code it names never runs, with --report-only or when loading it."""
    from benchmark.studies.spec import load_spec

    marker = tmp_path / "MARKER"
    (tmp_path / "evil.py").write_text(plugin_source(marker=str(marker)))
    evil = yaml.safe_load((EMBEDDED_DATA_DIR / "studies" / "scratch-mae.yaml").read_text())
    evil["id"] = "evil"
    evil["arms"] = [*evil["arms"], {"name": "evil", "objective": "evil.py:Good"}]
    for name in ("scratch-mae", "evil-spec"):
        (tmp_path / name).write_text(yaml.safe_dump(evil))
    monkeypatch.chdir(tmp_path)
    assert load_spec("scratch-mae").id == "scratch-mae"
    with pytest.raises(MaebenchError, match=r"no study spec 'evil-spec' among the bundled ones .*"
                                            r"a spec file is named by a path, e.g. ./evil-spec.yaml"):
        load_spec("evil-spec")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "MAEBENCH_RESULTS_DIR": str(tmp_path / "results"),
           "MAEBENCH_MODELS_DIR": str(tmp_path / "models"), "MAEBENCH_HOME": str(tmp_path / "home")}
    env.pop("MAEBENCH_DEBUG", None)
    out = subprocess.run([sys.executable, "-m", "benchmark.cli", "study", "scratch-mae", "--report-only"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    report = json.loads((tmp_path / "results" / "studies" / "scratch-mae.json").read_text())
    assert report["study"]["id"] == "scratch-mae" and "evil" not in report["arms"]
    assert not marker.exists()
    # named as a path, the file is the user's choice: then (and only then) its plug-in loads
    assert load_spec("./evil-spec").id == "evil"
    assert marker.exists()


# --------------------------------------------------------------------------- 7: the vocabulary learner


@pytest.mark.slow
def test_one_huge_word_does_not_slow_the_vocabulary_learner(tiny_texts):
    from tokenizers import BertWordPieceTokenizer

    from benchmark.training.backbone import MAX_WORD_CHARS, SPECIAL_TOKENS, learn_wordpiece_vocab

    plain = learn_wordpiece_vocab(tiny_texts, 400)
    started = time.perf_counter()
    hostile = learn_wordpiece_vocab([*tiny_texts, "a" * 400_000, "ab" * 200_000], 400)
    assert time.perf_counter() - started < 30  # minutes before: word length x merges
    assert hostile == plain  # words the tokenizer maps to [UNK] whole teach no merges
    # ... but their characters still join the alphabet
    assert {"ж", "##ж"} <= set(learn_wordpiece_vocab([*tiny_texts, "ж" * 101], 400))
    # the bound is the tokenizer's own: a longer word is [UNK] whole
    vocab = {t: i for i, t in enumerate([*SPECIAL_TOKENS, "a", "##a"])}
    assert BertWordPieceTokenizer(vocab)._tokenizer.model.max_input_chars_per_word == MAX_WORD_CHARS


def test_backbone_size_is_checked_against_memory(monkeypatch):
    import benchmark.training.backbone as backbone
    from benchmark.training.backbone import BackboneSize

    small = BackboneSize(layers=2, hidden=32, heads=2, ffn=64, max_positions=64, vocab_size=300)
    assert small.parameters() == 30284  # BertForMaskedLM at that size, decoder tied
    monkeypatch.setattr(backbone, "available_memory", lambda: 1 << 30)
    small.check_fits_memory()
    with pytest.raises(MaebenchError, match=r"backbone size: [\d,]+ parameters need about [\d.,]+ GiB of "
                                            r"memory to build and save, 1.0 GiB is available"):
        BackboneSize(layers=12, hidden=1024, ffn=80_000, heads=16).check_fits_memory()
    monkeypatch.setattr(backbone, "available_memory", lambda: None)  # unknown: not refused
    BackboneSize(layers=12, hidden=1024, ffn=80_000, heads=16).check_fits_memory()


@pytest.mark.slow
def test_pretrain_with_a_misbehaving_plugin_ends_in_one_line_and_no_card(tiny_bert_dir, tmp_path):
    """The adapters as the pre-training loop uses them: a plug-in whose forward raises, returns a
    float or a NaN loss stops `maebench pretrain` with one line naming it; no card, no weights."""
    from benchmark.training.pretrain import write_card
    from tests.helpers.cards import tiny_card

    models, home = tmp_path / "models", tmp_path / "home"
    write_card(tiny_card(tiny_bert_dir), models, overwrite=False)
    plugin = tmp_path / "lab" / "obj.py"
    plugin.parent.mkdir()
    plugin.write_text(plugin_source())
    expected = {"Raises": "forward raised ValueError: boom second line",
                "ReturnsFloat": "forward must return a (loss tensor, parts dict) pair; it returned a float",
                "NanLoss": "the loss is nan (not finite); training stopped, no card written"}
    found = [{"id": cls, "argv": [
        "pretrain", "--objective", f"{plugin}:{cls}", "--init", "tiny-init", "--corpus", TINY_CORPUS,
        "--budget", "2steps", "--name", f"r3-{cls.lower()}", "--set", "batch_size=4", "--set",
        "max_length=32", "--set", "head_warmup_steps=0", "--device", "cpu", "--models-dir", str(models)]}
        for cls in expected]
    file = tmp_path / "cases.json"
    file.write_text(json.dumps(found))
    env = {**os.environ, "MAEBENCH_MODELS_DIR": str(models), "MAEBENCH_HOME": str(home),
           "MAEBENCH_RESULTS_DIR": str(tmp_path / "results"), "HF_HUB_OFFLINE": "1",
           "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    env.pop("MAEBENCH_DEBUG", None)
    proc = subprocess.run([sys.executable, "-m", "tests.attack_driver", str(file)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)
    rows = {row["id"]: row for row in map(json.loads, (
        line for line in proc.stdout.splitlines() if line.startswith("{")))}
    assert set(rows) == set(expected), proc.stderr[-2000:]
    where = f"error: objective plugin obj.py:%s (file {plugin.resolve()}): "
    for cls, message in expected.items():
        lines = [line for line in rows[cls]["stderr"].splitlines() if line.strip()]
        errors = [line for line in lines if line.startswith("error:")]
        assert rows[cls]["code"] == 2 and errors == lines[-1:], lines[-5:]
        assert errors[0].startswith(where % cls) and message in errors[0], errors[0]
        assert not any("Traceback" in line for line in lines)
    assert sorted(p.name for p in models.iterdir()) == ["tiny-init.yaml"]
    assert not [p for p in (home / "checkpoints").glob("*") if not p.name.startswith(".")]
