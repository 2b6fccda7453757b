"""The encoder of one role on the backend the policy chose (.policy): the one place that loads it.

Above both backends: the torch classes (.torch_backend) know nothing of OpenVINO, and the
OpenVINO backend (.openvino_backend) converts those classes and falls back to them, so the
choice between the two is acted on here, once.
"""

from __future__ import annotations

from benchmark.catalog.registry import DenseConfig
from benchmark.retrievers.backends.torch_backend import HFEncoder, Role, load_torch_encoder


def load_encoder(
    checkpoint: str, config: DenseConfig, device: str, role: Role, backend: str = "torch",
    weights: str | None = None, strict: bool = False,
) -> HFEncoder:
    """The encoder of one role. backend "openvino" (CPU only) needs `weights`, the identity the
    conversion cache is keyed by. Not `strict` is `auto`'s request: OpenVINO where it converts
    with parity AND measures faster than torch on this CPU, else a torch encoder whose
    backend_info["fallback"] says why. `strict` (an explicit --backend openvino, or a bench
    timing OpenVINO itself) skips the measurement and makes any fallback an error."""
    if backend == "openvino":
        from benchmark.retrievers.backends.openvino_backend import load_openvino_encoder

        if weights is None:
            raise ValueError("the openvino backend needs the weights identity for its cache key")
        return load_openvino_encoder(checkpoint, config, role, weights, strict)
    return load_torch_encoder(checkpoint, config, device, role)
