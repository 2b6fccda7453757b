"""Inference backends: what computes a dense card's vectors, torch or OpenVINO on CPU.

One module per role, in the order a run meets them:

- policy: which backend to use (`auto` measures; `--backend` forces), without importing either;
- dispatch: loads the encoder of one role on the chosen backend;
- torch_backend: the encoder classes, one per encoder kind a card can name (HFEncoder & co.);
- openvino_backend: loads a converted encoder and encodes with it, or falls back to torch;
- openvino_export: traces the torch encoder into an OpenVINO model and checks parity;
- openvino_cache: the converted models on disk, and the failures recorded there;
- measurement: times torch against OpenVINO on this CPU, once, for `auto`;
- calibration: keeps that measurement on disk, so later runs read the choice.

Nothing is imported here: a warm run served from the embedding store loads the policy and
the two small cache readers it asks (openvino_cache, calibration), never torch or openvino.
"""
