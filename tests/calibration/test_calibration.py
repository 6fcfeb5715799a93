"""The false-positive target holds for every seeding variant on real human text (1,100 posts of 300+
tokens, 40% repetitive), at 1e-2, 1e-3 and 1e-4, under four keys; and the old n-gram counting breaks it.

The table these tests measure is printed by `python -m tests.calibration.calibrate` and kept in
docs/detector.md. About two minutes on two cores.
"""

from __future__ import annotations

import pytest

from tests.calibration.calibrate import LEVEL, VARIANTS, Variant, markdown_table, measure
from tests.calibration.corpus import MIN_TOKENS, Post, calibration_posts, missing_sources

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def posts() -> tuple[Post, ...]:
    missing = missing_sources()
    if missing:
        pytest.skip(f"the calibration corpus needs the Debian packages {missing}: run `make calibration-deps`")
    return calibration_posts()


def test_corpus_is_real_repetitive_human_text(posts: tuple[Post, ...]) -> None:
    kinds = {p.kind for p in posts}
    assert len(posts) >= 1000
    assert {"command listing", "numbered list", "lyrics with chorus", "chant", "copypasta"} <= kinds
    assert sum(p.kind != "man page prose" for p in posts) >= 0.3 * len(posts)
    assert len({p.text for p in posts}) == len(posts)  # no post counted twice
    assert MIN_TOKENS == 300


def test_family_wise_rate_is_not_above_target_for_any_scheme(posts: tuple[Post, ...]) -> None:
    cells = measure(posts, "pairs")
    print("\n" + markdown_table(cells))
    assert len(cells) == 3 * sum(len(v.contexts) for v in VARIANTS)
    above = [c for c in cells if c.significantly_above]
    assert not above, "\n".join(
        f"{c.variant} context {c.context}: {c.flagged}/{c.trials} at target {c.target:g} (p {c.p_value:.2g} < {LEVEL})"
        for c in above
    )
    # A cell that never flags anything at the loose target would test nothing: the detector really tests.
    assert all(c.flagged > 0 for c in cells if c.target == 1e-2)


def test_ngram_counting_voids_the_guarantee(posts: tuple[Post, ...]) -> None:
    """The compatibility mode counts distinct n-grams that share a (seed, target) pair as independent: the
    same calibration flags it far above target. This is also the proof that the test above has power."""
    inflated = (
        Variant("transformers lefthash", {"seeding_scheme": "lefthash"}, (4,)),
        Variant("lm-watermarking selfhash", {"generator": "lm-watermarking", "seeding_scheme": "selfhash"}, (4,)),
    )
    cells = measure(posts, "ngrams", variants=inflated)
    print("\n" + markdown_table(cells))
    for cell in cells:
        assert cell.significantly_above, cell
        # The inflation grows in the tail: several times the target at 1e-2, tens of times at 1e-4.
        assert cell.rate > (3 if cell.target >= 1e-2 else 10) * cell.target, cell
