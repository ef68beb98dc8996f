"""Candidate generation stores decoding parameters and seeds; pairing never duplicates or pairs identical text."""

from sqlalchemy import func, select

from align.registry import ensure_base_version, get_version
from align.sampling import DecodingParams, generate_candidates, load_policy
from collect.pairing import make_pairs
from collect.splits import normalize_text
from db.models import Generation, ModelVersion, Pair, Prompt
from db.session import session_scope


def test_generate_then_pair_is_idempotent(loaded, tiny_model):
    policy = load_policy(str(tiny_model))
    params = DecodingParams(max_new_tokens=24)
    with session_scope(loaded) as s:
        base = ensure_base_version(s, str(tiny_model))
        prompt_ids = list(s.scalars(select(Prompt.id).order_by(Prompt.id).limit(6)))
        added = generate_candidates(s, base, prompt_ids, samples_per_prompt=2, params=params, seed=7,
                                    batch_size=4, progress=False, policy=policy)
        assert added == 12
        gens = s.scalars(select(Generation)).all()
        assert all(g.params["max_new_tokens"] == 24 and g.params["temperature"] == 0.8 for g in gens)
        assert {g.seed for g in gens} == {7, 8, 9}  # three batches of four
        assert all(g.text for g in gens)
        texts: dict[int, set[str]] = {}
        for g in gens:
            texts.setdefault(g.prompt_id, set()).add(normalize_text(g.text))
        distinct = sum(len(t) == 2 for t in texts.values())  # prompts whose two samples differ
        assert distinct >= 1  # sampling at temperature 0.8 does not repeat itself on every prompt
        created = make_pairs(s, prompt_ids, base, base, seed=0)
        assert created == distinct  # one pair per prompt, none of identical texts
    with session_scope(loaded) as s:
        base = get_version(s, "base")
        assert generate_candidates(s, base, prompt_ids, samples_per_prompt=2, params=params, progress=False,
                                   policy=policy) == 0
        assert make_pairs(s, prompt_ids, base, base) == 0
        pairs = s.scalars(select(Pair)).all()
        assert len(pairs) == created
        for p in pairs:
            assert p.generation_a.text.strip() != p.generation_b.text.strip()
            assert p.generation_a.prompt_id == p.generation_b.prompt_id == p.prompt_id
            assert p.region_id == p.prompt.region_id


def test_pairs_across_versions_and_skips_identical_texts(loaded):
    with session_scope(loaded) as s:
        a = ModelVersion(name="a", base_model="m")
        b = ModelVersion(name="b", base_model="m")
        s.add_all([a, b])
        s.flush()
        p1, p2 = s.scalars(select(Prompt.id).order_by(Prompt.id).limit(2)).all()
        s.add_all([
            Generation(prompt_id=p1, model_version_id=a.id, text="Same words", params={}, seed=0),
            Generation(prompt_id=p1, model_version_id=b.id, text="Same  words ", params={}, seed=0),
            Generation(prompt_id=p2, model_version_id=a.id, text="One", params={}, seed=0),
            Generation(prompt_id=p2, model_version_id=b.id, text="Two", params={}, seed=0),
        ])
        s.flush()
        assert make_pairs(s, [p1, p2], a, b) == 1
        pair = s.scalar(select(Pair))
        assert pair.prompt_id == p2 and {pair.model_a_id, pair.model_b_id} == {a.id, b.id}
        assert s.scalar(select(func.count()).select_from(Pair)) == 1
