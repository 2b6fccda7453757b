"""One data-parallel pre-training worker (started by training.processes.launch_workers).

It rebuilds the init card and options from the launcher's payload and runs the same
pretrain_card as a single process would; accelerate reads the group from the environment
(MULTI_CPU over gloo). Errors go to the launcher as one line (training.processes.report_failure),
never as a second copy of the same `error:` on the terminal.
"""

from __future__ import annotations

import json
import os
import sys


def main() -> int:
    from benchmark.training.finetune import passive_thread_wait

    passive_thread_wait()  # before torch loads (the launcher sets it too)
    from benchmark.core.errors import MaebenchError
    from benchmark.training.processes import PAYLOAD_ENV, report_failure

    try:
        import torch

        torch.set_num_threads(1)
        from benchmark.training.pretrain import options_from_payload, pretrain_card

        init, options = options_from_payload(json.loads(os.environ[PAYLOAD_ENV]))
        if os.environ.get("RANK", "0") == "0":
            from benchmark.core.progress import progress_log

            with progress_log():
                pretrain_card(init, options)
        else:
            pretrain_card(init, options)
    except MaebenchError as exc:
        report_failure(str(exc))
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
