"""Is this a venous duplex of the leg? For reports and orders coded locally (an Epic procedure id, an Oracle
Health code set 72 event code) the title is all there is: venous + (duplex | Doppler | ultrasound) + lower
extremity / leg (docs/clinical/RULES.md R-TEXT-1). Arterial, upper-limb and carotid studies are not.
"""

from __future__ import annotations

import re
from functools import lru_cache

from cds_service.clinical.reports import lexicon as lx


def _words(phrases: tuple[str, ...]) -> re.Pattern[str]:
    alternatives = "|".join(re.escape(p) for p in sorted(phrases, key=len, reverse=True))
    return re.compile(rf"(?<![a-z0-9])(?:{alternatives})(?![a-z0-9])")


_MODALITY = _words(lx.DUPLEX_TITLE_MODALITY)
_VENOUS = _words(lx.DUPLEX_TITLE_VENOUS)
_LEG = _words(lx.DUPLEX_TITLE_LEG)
_NOT = _words(lx.DUPLEX_TITLE_NOT)


@lru_cache(maxsize=4096)
def is_duplex_title(title: str) -> bool:
    text = title.lower()
    if not text or _NOT.search(text):
        return False
    return bool(_MODALITY.search(text) and _VENOUS.search(text) and _LEG.search(text))
