"""The demo voice (issue 12): training data from speech the project synthesises, and the PPG content encoder.

Stages, each resumable, run as `python -m models.demo STAGE WORK`:
    data      synthesise the labelled corpus into WORK/data (Kokoro-82M voices and mixes, flite, MBROLA)
    ppg       train the phone-posteriorgram content encoder into WORK/ppg
    ppg-eval  score it on held-out voices and engines (phone accuracy, speaker leakage)
    targets   synthesise the target voices' speech into WORK/targets (teacher / student / vocoder data)
    export    the pack from WORK's newest student, vocoder and PPG: speaker names, preview clips, SOURCES.md
    build     all of it, then prepare, vocoder, teacher, distill and export: the pack from nothing
`python -m models.demo evaluate PACK WORK` scores a pack on the held-out voices through the streaming engine.
"""
