"""Scrub personal data from text before it is stored.

    text, found = scrub("Call Jo on 0161 496 0123 or jo@example.co.uk", "GB")
    # text == "Call Jo on [PHONE] or [EMAIL]", found == Counter({"PHONE": 1, "EMAIL": 1})

Every candidate is validated (Luhn, IBAN mod 97, ``ipaddress``, phonenumbers metadata) rather than matched by
shape alone, so prices, dates, times, postcodes, hashtags, @handles, business URLs and version numbers in marketing
copy survive. Phone numbers the plan calls possible but not valid (reserved or not yet allocated ranges, such as
UK mobiles 07700 900xxx) are scrubbed too when they are written like phone numbers: full length, with a ``+``, a
trunk prefix or a bracketed area code.
The counter holds only counts per type, never the values themselves.
"""

from __future__ import annotations

import ipaddress
import re
from collections import Counter
from collections.abc import Callable, Iterable

import phonenumbers
from stdnum import iban, luhn

# The order in which the passes run: e-mails first because local parts may hold digits; IBAN and CARD before
# PHONE so long digit runs are not half-eaten by a phone match; IP before PHONE so dotted quads stay whole.
PII_TYPES = ("EMAIL", "IBAN", "CARD", "IP", "PHONE")

# National formats are ambiguous without a country, so unknown regions are checked against every country we
# collect from; international (+…) numbers are found whatever the region.
SUPPORTED_REGIONS = ("GB", "US", "AU", "DE", "ES", "MX")
MIN_PHONE_DIGITS = 6  # the shortest callable numbers in these plans (AU "13 xx xx") have six digits
# A number the plan does not call valid needs the shape of one instead: at least this many digits (a national
# number of 9+ digits after its 0 or 1) and a phone-only start. Shorter ones are order numbers and codes.
MIN_POSSIBLE_DIGITS = 10
_PHONE_START = re.compile(r"\+|\(|0|1[ .-]")  # international, bracketed area code, trunk 0 (GB/AU/DE), NANP "1-"
_VERSION_BEFORE = re.compile(r"\b(?:v|ver|version|versi[oó]n|release|build|firmware)\.?:?\s*$", re.IGNORECASE)

# Something must stand before the '@', which keeps social handles ("@CafeAncoats") out.
_EMAIL = re.compile(r"(?<![\w.%+-])[\w.%+-]+@[\w-]+(?:\.[\w-]+)*\.[^\W\d_]{2,}(?![\w-])")
_IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?:[ \u00a0]?[A-Z0-9]){11,30}\b", re.IGNORECASE)
# Digit groups joined by single spaces or dashes; a leading '+' marks a phone number, not a card, and the digits
# of a mistyped IBAN ("DE89 3704 …") are no card either.
_DIGIT_RUN = re.compile(r"(?<![\w.,])(?<![A-Za-z]{2}\d\d[ \u00a0])\+?\d+(?:[ \u00a0-]\d+)*(?!\w)")
_IPV4 = re.compile(r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?!\w|\.\d)")
# Digits with the separators people put in phone numbers; a dot only between digits, so a run ends with a sentence.
_PHONE_RUN = re.compile(r"(?<![\w+])[+(]?\d(?:[\d \u00a0()\-/]|\.(?=\d))*\d")
_VALID = phonenumbers.Leniency.VALID
_MX_MOBILE_ONE = re.compile(r"^(\+52[ .-]?)1[ .-]?(?=\d)")
_IPV6 = re.compile(r"(?<![\w:.])[0-9A-Fa-f]{0,4}:[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*")


def scrub(text: str, region_country: str | None = None) -> tuple[str, Counter]:
    """Replace e-mails, IBANs, card numbers, IPs and phone numbers with placeholders; count them per type."""
    found: Counter = Counter()
    text = _sub(_EMAIL, text, "EMAIL", found)
    if not any(ch.isdigit() for ch in text):
        return text, found
    text = _replace_ibans(text, found)
    text = _replace_cards(text, found)
    text = _replace_ipv6(text, found)
    text = _replace_ipv4(text, found)
    text = _replace_phones(text, region_country, found)
    return text, found


def scrub_many(texts: Iterable[str], region_country: str | None = None) -> tuple[list[str], Counter]:
    """Scrub each text with :func:`scrub`; return the texts and the summed counts."""
    out, total = [], Counter()
    for text in texts:
        clean, found = scrub(text, region_country)
        out.append(clean)
        total.update(found)
    return out, total


def _sub(pattern: re.Pattern, text: str, kind: str, found: Counter,
         valid: Callable[[str], bool] | None = None) -> str:
    def repl(m: re.Match) -> str:
        if valid is not None and not valid(m.group()):
            return m.group()
        found[kind] += 1
        return f"[{kind}]"

    return pattern.sub(repl, text)


def _is_ip(candidate: str) -> bool:
    try:
        ipaddress.ip_address(candidate)
    except ValueError:
        return False
    return True


def _replace_ibans(text: str, found: Counter) -> str:
    def repl(m: re.Match) -> str:
        # The pattern can run on into a following code or word ("… 00 BIC"), so drop tokens until it validates.
        tokens = m.group().split()
        while tokens:
            candidate = " ".join(tokens)
            if iban.is_valid(candidate):
                found["IBAN"] += 1
                return "[IBAN]" + m.group()[len(candidate):]
            tokens.pop()
        return m.group()

    return _IBAN.sub(repl, text)


def _replace_cards(text: str, found: Counter) -> str:
    def repl(m: re.Match) -> str:
        # A card may be followed by a CVV or expiry in the same run; try the longest run of whole groups first.
        run = m.group()
        if run.startswith("+"):
            return run
        groups = list(re.finditer(r"\d+", run))
        for n in range(len(groups), 0, -1):
            if _is_card([g.group() for g in groups[:n]]):
                found["CARD"] += 1
                return "[CARD]" + run[groups[n - 1].end():]
        return run

    return _DIGIT_RUN.sub(repl, text)


def _is_card(groups: list[str]) -> bool:
    digits, sizes = "".join(groups), [len(g) for g in groups]
    # Issuers start with 2-6 (national phone numbers with 0 or 1), and printed cards come in fours or 4-6-5/4-6-4,
    # which keeps a phone number followed by "365 days" (3-3-4-3) from passing on the 1-in-10 Luhn odds.
    grouped = len(sizes) == 1 or sizes in ([4, 6, 5], [4, 6, 4]) or (set(sizes[:-1]) == {4} and sizes[-1] <= 4)
    return 13 <= len(digits) <= 19 and digits[0] in "23456" and grouped and luhn.is_valid(digits)


def _replace_ipv4(text: str, found: Counter) -> str:
    def repl(m: re.Match) -> str:
        # "Version 1.2.3.4" is a dotted quad too; what stands before it says which one it is
        if not _is_ip(m.group()) or _VERSION_BEFORE.search(text, max(0, m.start() - 12), m.start()):
            return m.group()
        found["IP"] += 1
        return "[IP]"

    return _IPV4.sub(repl, text)


def _replace_ipv6(text: str, found: Counter) -> str:
    def repl(m: re.Match) -> str:
        # Sentence punctuation sticks to the candidate ("…::1." or "host 2001:db8::1:"), so peel it off.
        candidate = m.group()
        while candidate and not _is_ipv6(candidate):
            candidate = candidate[:-1] if candidate[-1] in ".:" else ""
        if not candidate:
            return m.group()
        found["IP"] += 1
        return "[IP]" + m.group()[len(candidate):]

    return _IPV6.sub(repl, text)


def _is_ipv6(candidate: str) -> bool:
    # Requiring a digit keeps words such as "cafe::bad" out; real addresses nearly always contain one.
    return any(ch.isdigit() for ch in candidate) and _is_ip(candidate) and ":" in candidate


def _replace_phones(text: str, region_country: str | None, found: Counter) -> str:
    if sum(ch.isdigit() for ch in text) < MIN_PHONE_DIGITS:  # the matcher is the slow part: skip hopeless texts
        return text
    regions = [region_country.upper()] if region_country else SUPPORTED_REGIONS
    spans = [span for region in regions for span in _phone_spans(text, region)]
    # Of overlapping candidates the longest wins, so no country code or trailing group is left behind.
    kept: list[tuple[int, int]] = []
    for start, end in sorted(spans, key=lambda span: (span[0] - span[1], span[0])):
        if all(end <= s or start >= e for s, e in kept):
            kept.append((start, end))
    for start, end in sorted(kept, reverse=True):
        text = text[:start] + "[PHONE]" + text[end:]
    if kept:
        found["PHONE"] += len(kept)
    return text


def _phone_spans(text: str, region: str) -> list[tuple[int, int]]:
    spans = []
    # VALID leniency checks each number against the country's numbering plan, which rules out prices, years,
    # dates, times, postcodes and quantities that merely look like digits.
    for match in phonenumbers.PhoneNumberMatcher(text, region, leniency=_VALID):
        raw = match.raw_string
        # Variable-length plans (DE) let "089 1234567. 3.000 Besucher" read as one number, but nobody writes a
        # full stop inside a phone number: keep what precedes it if that is a number on its own, else nothing.
        cut = re.search(r"[.,;:]\s", raw)
        if cut is None:
            spans.append((match.start, match.end))
        elif _is_whole_phone(raw[:cut.start()], region):
            spans.append((match.start, match.start + cut.start()))
    # The matcher skips or splits a number followed by another one ("0161 496 0123 24 hours a day", "+1 … 365
    # days"), so also read each digit run from its start, dropping trailing groups until a whole number is left.
    for run in _PHONE_RUN.finditer(text):
        if sum(ch.isdigit() for ch in run.group()) >= 7:
            ends = [g.end() for g in re.finditer(r"\d+", run.group())]
            for end in reversed(ends):
                if _is_whole_phone(run.group()[:end], region):
                    spans.append((run.start(), run.start() + end))
                    break
            else:
                # shortest first: in variable-length plans (DE) a longer reading would swallow a following number
                end = next((end for end in ends if _is_possible_phone(run.group()[:end], region)), None)
                if end is not None:
                    spans.append((run.start(), run.start() + end))
    return spans


def _is_possible_phone(candidate: str, region: str) -> bool:
    """A number of the right length for ``region``'s plan, written as only phone numbers are (see the module
    docstring), even if the plan does not call it valid."""
    if sum(ch.isdigit() for ch in candidate) < MIN_POSSIBLE_DIGITS or not _PHONE_START.match(candidate):
        return False
    try:
        number = phonenumbers.parse(candidate, region)
    except phonenumbers.NumberParseException:
        return False
    return phonenumbers.is_possible_number(number)


def _is_whole_phone(candidate: str, region: str) -> bool:
    # Mexican mobiles are still written with the "1" dropped from the plan in 2019 ("+52 1 55 …", WhatsApp).
    for variant in {candidate, _MX_MOBILE_ONE.sub(r"\1", candidate)}:
        match = next(iter(phonenumbers.PhoneNumberMatcher(variant, region, leniency=_VALID)), None)
        if match is not None and match.start == 0 and match.end == len(variant):
            return True
    return False
