"""Write a synthetic BEIR-format dataset (corpus.jsonl, queries.jsonl, qrels/test.tsv) of any size.

Documents are random draws from a fixed vocabulary of made-up words (seeded, so the same size
and seed always give the same bytes, hence the same corpus fingerprint); each query copies a
few words of one document, which is its single relevant document. For scale benchmarks of the
embedding store, not for quality.

    python bench/make_synthetic_beir.py /tmp/synth/nq --docs 500000 --queries 200
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

VOCAB = [f"w{i}" for i in range(5000)]


def write_dataset(folder: Path, n_docs: int, n_queries: int, seed: int = 0, words: int = 24,
                  corpus_from: Path | None = None) -> None:
    """`corpus_from`: link that corpus.jsonl instead of writing one (FEVER / Climate-FEVER)."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "qrels").mkdir(exist_ok=True)
    picked = sorted(rng.sample(range(n_docs), n_queries))
    picked_set = set(picked)
    texts: dict[int, str] = {}
    if corpus_from is None:
        with (folder / "corpus.jsonl").open("w", encoding="utf-8") as out:
            for i in range(n_docs):
                text = " ".join(rng.choices(VOCAB, k=words))
                if i in picked_set:
                    texts[i] = text
                out.write(json.dumps({"_id": f"doc{i}", "title": f"w{i % 5000}", "text": text}) + "\n")
    else:
        target = folder / "corpus.jsonl"
        target.unlink(missing_ok=True)
        target.symlink_to(corpus_from.resolve())
        with corpus_from.open(encoding="utf-8") as handle:
            for i, line in enumerate(handle):
                if i in picked_set:
                    texts[i] = json.loads(line)["text"]
    with (folder / "queries.jsonl").open("w", encoding="utf-8") as out, \
            (folder / "qrels" / "test.tsv").open("w", encoding="utf-8") as qrels:
        qrels.write("query-id\tcorpus-id\tscore\n")
        for q, i in enumerate(picked):
            words_of_doc = texts[i].split()
            out.write(json.dumps({"_id": f"q{q}", "text": " ".join(rng.sample(words_of_doc, 6))}) + "\n")
            qrels.write(f"q{q}\tdoc{i}\t1\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--docs", type=int, required=True)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    write_dataset(args.folder, args.docs, args.queries, args.seed)


if __name__ == "__main__":
    main()
