"""KGW watermark detection (Kirchenbauer et al. 2023), bit-compatible with the generators people run.

seeding.py     the PRF: which seed each scored token's green list is drawn from, per generator
mt19937.py     torch's CPU randperm (mt19937 + Fisher-Yates) re-done in compiled code, cut short; checked
               against the installed torch once (the pass remembered on disk)
greenlists.py  green lists by seed: derived once, cached under a memory bound, on any device
scoring.py     token ids -> green/red per scored n-gram, unique n-grams counted once
stats.py       z-score, exact binomial tail in log space, multiple-testing corrections
windows.py     the best window: a watermarked passage pasted inside human text
normalize.py   undo character-level attacks (NFKC, invisible characters, emoji, homoglyphs)
detector.py    text in, one WatermarkScore per post and scheme out

Detection on the CPU is numpy and numba only: torch is imported for a GPU (its table, CUDA generators' green
lists) and for the first check of an installed torch, never on the CPU path after that.
"""

from moderation.watermark.detector import WatermarkDetector, WatermarkScore, WindowMatch

__all__ = ["WatermarkDetector", "WatermarkScore", "WindowMatch"]
