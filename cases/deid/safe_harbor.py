"""The Safe Harbor rules of de-identification: the policy's version and its generalisations.

The pseudonym of a patient, the age band with every age over 89 as "90+", the three-digit ZIP with
the restricted prefixes as "000". ``cases.deid.records`` applies them to a case record.
"""

from __future__ import annotations

import hashlib
import hmac
import re

POLICY_VERSION = "safe-harbor-2026.4"  # 2026.4: emails written out ("m dot k at mail dot com")

# Three-digit ZIP prefixes whose area holds 20,000 people or fewer (HHS guidance on the Safe
# Harbor method, 2000 Census). Safe Harbor turns them into "000". The one list; update it here.
RESTRICTED_ZIP3 = frozenset(
    {
        "036",
        "059",
        "063",
        "102",
        "203",
        "556",
        "692",
        "790",
        "821",
        "823",
        "830",
        "831",
        "878",
        "879",
        "884",
        "890",
        "893",
    }
)
AGE_CEILING = 89  # ages above this are reported only as "90+"
OLDEST_BAND = "90+"


def pseudonym(source: str, mrn: str, *, key: str | bytes) -> str:
    """HMAC-SHA256 of the patient's source and MRN under the pseudonym key (hex).

    A unit separator joins the two so ("ab", "c") and ("a", "bc") cannot collide.
    """
    if not key:
        raise ValueError("The pseudonym key is empty; set PSEUDONYM_KEY.")
    key_bytes = key.encode() if isinstance(key, str) else key
    message = f"{source.strip().lower()}\x1f{mrn.strip().upper()}".encode()
    return hmac.new(key_bytes, message, hashlib.sha256).hexdigest()


def age_band(age: int) -> str:
    if age > AGE_CEILING:
        return OLDEST_BAND
    low = (age // 10) * 10
    return f"{low}-{low + 9}"


def generalise_zip(zip_code: str | None) -> str | None:
    digits = re.sub(r"\D", "", zip_code or "")
    if len(digits) < 3:
        return None
    prefix = digits[:3]
    return "000" if prefix in RESTRICTED_ZIP3 else prefix
