"""Character classes decided once, from Unicode's own data (read through ICU), for every part that looks at
characters: the watermark normalizer and the spam and flood plugins.
"""

from __future__ import annotations

import icu

_DEFAULT_IGNORABLE = icu.UProperty.DEFAULT_IGNORABLE_CODE_POINT


def is_invisible(ch: str) -> bool:
    """Whether a character renders as nothing: Unicode's Default_Ignorable_Code_Point (soft hyphen, zero-width
    characters and joiners, word joiner, bidi controls, variation selectors, tag characters, Mongolian vowel
    separator, BOM, Hangul fillers, ...)."""
    return bool(icu.Char.hasBinaryProperty(ch, _DEFAULT_IGNORABLE))
