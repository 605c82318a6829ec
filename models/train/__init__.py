"""Training CoMoSVC and its vocoder: `python -m models.train prepare|teacher|distill|vocoder|evaluate`.

Every stage writes checkpoints in the official layouts (`models.comosvc.load_official`,
`models.vocoder.load_vocoder`) and keeps its training state (optimiser, EMA, step) in a separate
`resume.pt` beside them. See README "Train your own voice".
"""
