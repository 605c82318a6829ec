"""PyTorch side of CoMo Live: the CoMoSVC model, feature extraction, checkpoints and training.

Only `exporters/` and the reference CLI `models.infer` import this package; the runtime never does.
"""
