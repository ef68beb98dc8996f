"""Region by code: one lookup for every layer, one message naming what exists."""

import pytest

from db.errors import NotFound
from db.lookups import get_region, get_regions
from db.session import session_scope


def test_get_region_returns_the_row_or_names_the_known_codes(loaded):
    with session_scope(loaded) as s:
        assert get_region(s, "en-GB-leeds").code == "en-GB-leeds"
        with pytest.raises(NotFound, match=r"^unknown region 'xx-nowhere'; known: .*en-GB-leeds"):
            get_region(s, "xx-nowhere")


def test_get_regions_keeps_the_order_asked_drops_duplicates_and_names_the_first_unknown(loaded):
    with session_scope(loaded) as s:
        assert get_regions(s, []) == []
        assert [r.code for r in get_regions(s, ["en-GB-leeds", "en-AU-perth", "en-GB-leeds"])] == \
            ["en-GB-leeds", "en-AU-perth"]
        with pytest.raises(NotFound, match=r"^unknown region 'zz-1'; known: "):
            get_regions(s, ["en-GB-leeds", "zz-1", "zz-2"])


def test_an_empty_database_says_none_are_known(engine):
    with session_scope(engine) as s, pytest.raises(NotFound, match="known: none"):
        get_region(s, "en-GB-leeds")
