import random
from collections import Counter

from hypothesis import given
from hypothesis import strategies as st

from collect.splits import assign_splits, content_hash, normalize_text


def test_hash_ignores_trivial_whitespace_and_unicode_form():
    assert content_hash("Caf\u00e9  au lait ") == content_hash("Cafe\u0301 au lait")
    assert content_hash("a", "b") != content_hash("ab")
    assert normalize_text("  a \n b ") == "a b"


def test_stratum_is_eighty_ten_ten():
    hashes = [content_hash(str(i)) for i in range(100)]
    assert Counter(assign_splits(hashes).values()) == {"train": 80, "val": 10, "test": 10}


def test_order_does_not_matter():
    hashes = [content_hash(str(i)) for i in range(37)]
    shuffled = hashes[:]
    random.Random(1).shuffle(shuffled)
    assert assign_splits(hashes) == assign_splits(shuffled)


def test_new_items_top_up_the_lagging_split():
    # a stratum with 9 train items already stored: the next item must go to val or test, not train
    got = assign_splits([content_hash("new")], {"train": 9, "val": 0, "test": 0})
    assert list(got.values())[0] in {"val", "test"}


@given(st.integers(min_value=1, max_value=300))
def test_each_split_stays_within_one_item_of_its_share(n):
    counts = Counter(assign_splits([content_hash(str(i)) for i in range(n)]).values())
    for name, share in {"train": 0.8, "val": 0.1, "test": 0.1}.items():
        assert abs(counts[name] - share * n) <= 1
