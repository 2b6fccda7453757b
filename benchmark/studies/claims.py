"""Which weights folders a study trains into, claimed before it trains anything (issue 27,
class 6).

Weights live under checkpoints_dir()/<card name>, shared by every study on the machine, and a
study's card names are `<study id>-<arm>-...`: ids and arm names may both contain '-', so
study 'ra' arm 'b-x' and study 'ra-b' arm 'x' both name 'ra-b-x-pt', and the second study's
pre-training replaced the first's weights (whose card still pinned the old sha256). The names
stay as they are (committed study cards and results carry them); instead each study claims its
folder names before training, and a name another study holds is refused in one line.
"""

from __future__ import annotations

from benchmark.studies.pilot import pilot_card_name
from benchmark.studies.spec import StudySpec, cells, init_card_name, stage0_card_name
from benchmark.training.checkpoints import claim_checkpoint_names


def weights_names(study: StudySpec) -> dict[str, str]:
    """Every weights folder name (= card name, under checkpoints_dir()) `study` trains into,
    with what it holds: the built backbone, stage 0, each arm's pre-training and fine-tuned
    cells, the pilot's candidates."""
    names: dict[str, str] = {}
    if study.backbone is not None:
        names[init_card_name(study)] = "the backbone built from nothing"
    if stage0_card_name(study):
        names[stage0_card_name(study)] = "stage 0"
    for cell in cells(study):
        if cell.pretrained:
            names.setdefault(cell.pretrained, f"arm '{cell.arm.name}' pre-training")
        names[cell.finetuned] = f"arm '{cell.arm.name}' seed {cell.seed} fine-tuning"
    if study.finetune.pilot is not None:
        for lr in study.finetune.pilot.learning_rates:
            names[pilot_card_name(study, lr)] = f"pilot rate {lr:g}"
    return names


def claim_weights(study: StudySpec) -> None:
    """Claim this study's weights folders before it trains anything (training.checkpoints
    .claim_checkpoint_names): a folder another study claimed is one line, and this study stops
    before it could replace that study's weights."""
    claim_checkpoint_names(f"study '{study.id}'", weights_names(study))
