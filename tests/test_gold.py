"""Gold pairs: creation (sides, idempotence, validation, permissions, audit), mark/unmark, listing, the page."""

import random

import pytest
from sqlalchemy import func, select
from streamlit.testing.v1 import AppTest

from collect.gold import create_gold_pair, gold_pairs, mark_gold, prompt_options, unmark_gold
from collect.ingest import EXTERNAL_VERSION, import_file
from collect.splits import content_hash
from db.errors import AuthError, NotFound, PermissionDenied, ValidationError
from db.models import AuditEvent, Choice, Generation, ModelVersion, Pair, Prompt, Region, Side, User, Vote
from db.queries import vote_records
from db.session import session_scope
from rewards.quality import reviewer_quality
from tests.conftest import login_as, make_pairs, write_jsonl

BETTER = "Ey up, Headingley! Porridge and a brew for £4 at Otley Road Kitchen."
WORSE = "Dear valued customer, we are pleased to announce our breakfast offer."


@pytest.fixture
def gold(loaded):
    """The loaded database, an engineer, a reviewer of Leeds, and the ids of the Leeds prompts."""
    engineer = login_as(loaded, "eng", roles=["engineer"])
    reviewer = login_as(loaded, "rev", regions=["en-GB-leeds"])
    with session_scope(loaded) as s:
        prompts = list(s.scalars(select(Prompt.id).join(Region).where(Region.code == "en-GB-leeds")
                                 .order_by(Prompt.id)))
    return loaded, engineer, reviewer, prompts


def count(s, model) -> int:
    return s.scalar(select(func.count()).select_from(model))


def expected_side(seed: int) -> str:
    """Where ``create_gold_pair`` puts the better output for ``seed``: "a" when the first draw is below 0.5."""
    return "a" if random.Random(seed).random() < 0.5 else "b"


def test_create_stores_generations_pair_and_audit(gold):
    engine, engineer, _, prompts = gold
    with session_scope(engine) as s:
        pair_id = create_gold_pair(s, engineer, prompts[0], BETTER, WORSE, seed=1)
    with session_scope(engine) as s:
        pair, prompt = s.get(Pair, pair_id), s.get(Prompt, prompts[0])
        external = s.scalar(select(ModelVersion).where(ModelVersion.name == EXTERNAL_VERSION))
        assert pair.is_gold and pair.gold_choice == Choice(expected_side(1))
        assert (pair.prompt_id, pair.region_id, pair.model_a_id, pair.model_b_id) == \
            (prompt.id, prompt.region_id, external.id, external.id)
        right = pair.generation_a if pair.gold_choice == Choice.a else pair.generation_b
        wrong = pair.generation_b if pair.gold_choice == Choice.a else pair.generation_a
        assert (right.text, wrong.text) == (BETTER, WORSE)
        for g in (right, wrong):
            assert (g.model_version_id, g.prompt_id, g.params, g.seed) == (external.id, prompt.id,
                                                                           {"purpose": "gold"}, 0)
            assert g.content_hash == content_hash(prompt.content_hash, g.text)
        event = s.scalar(select(AuditEvent).where(AuditEvent.action == "create_gold_pair"))
        assert (event.user_id, event.entity, event.entity_id) == (engineer.id, "pair", pair_id)
        assert event.details == {"prompt_id": prompt.id, "gold_choice": expected_side(1)}


def test_the_better_output_lands_on_either_side(gold):
    engine, engineer, _, prompts = gold
    seeds = range(8)
    assert {expected_side(seed) for seed in seeds} == {"a", "b"}  # these seeds exercise both orientations
    with session_scope(engine) as s:
        ids = [create_gold_pair(s, engineer, prompts[seed], f"{BETTER} #{seed}", WORSE, seed=seed) for seed in seeds]
    with session_scope(engine) as s:
        for seed, pair_id in zip(seeds, ids, strict=True):
            pair = s.get(Pair, pair_id)
            assert pair.gold_choice.value == expected_side(seed)
            better = pair.generation_a if pair.gold_choice == Choice.a else pair.generation_b
            assert better.text == f"{BETTER} #{seed}"


def test_creating_the_same_gold_pair_again_returns_it(gold):
    engine, engineer, _, prompts = gold
    with session_scope(engine) as s:
        first = create_gold_pair(s, engineer, prompts[0], BETTER, WORSE, seed=0)
    with session_scope(engine) as s:
        counts = (count(s, Generation), count(s, Pair), count(s, AuditEvent))
        # other seed, other whitespace: the same two texts after normalisation
        again = create_gold_pair(s, engineer, prompts[0], f"  {BETTER.replace(' ', '  ')}\n", WORSE + " ", seed=1)
    with session_scope(engine) as s:
        assert again == first
        assert (count(s, Generation), count(s, Pair), count(s, AuditEvent)) == counts
        with pytest.raises(ValidationError, match=rf"^better: pair {first} already holds these outputs"):
            create_gold_pair(s, engineer, prompts[0], WORSE, BETTER)  # the opposite answer is a conflict


def test_an_imported_pair_with_the_same_texts_becomes_gold(gold, tmp_path):
    engine, engineer, _, _ = gold
    brief = "Ad copy for a Kirkstall Abbey summer concert."
    path = write_jsonl(tmp_path / "prefs.jsonl", [{"prompt": brief, "chosen": BETTER, "rejected": WORSE}])
    with session_scope(engine) as s:
        import_file(s, path, "preferences", region="en-GB-leeds", task_type="ad_copy")
    with session_scope(engine) as s:
        imported = s.scalar(select(Pair))
        prompt_id, imported_id, generations = imported.prompt_id, imported.id, count(s, Generation)
        assert not imported.is_gold
    with session_scope(engine) as s:
        assert create_gold_pair(s, engineer, prompt_id, BETTER, WORSE) == imported_id
    with session_scope(engine) as s:
        pair = s.get(Pair, imported_id)
        assert pair.is_gold and pair.gold_choice == Choice.a  # the importer stores chosen as "a"
        assert (count(s, Pair), count(s, Generation)) == (1, generations)
        event = s.scalar(select(AuditEvent).where(AuditEvent.action == "create_gold_pair"))
        assert event.details == {"prompt_id": prompt_id, "gold_choice": "a", "existing_pair": True}


def test_validation_errors_name_the_field(gold):
    engine, engineer, _, prompts = gold
    cases = [
        (prompts[0], "", WORSE, ValidationError, "better: the better output is empty"),
        (prompts[0], BETTER, "  \n ", ValidationError, "worse: the worse output is empty"),
        (prompts[0], BETTER, f" {BETTER.replace(' ', chr(10))} ", ValidationError,
         "worse: the worse output is the same text as the better one"),
        (prompts[0], "x" * 20_001, WORSE, ValidationError, "better: 20001 characters, over the 20000 limit"),
        (999_999, BETTER, WORSE, NotFound, "prompt_id: prompt 999999 does not exist"),
    ]
    for prompt_id, better, worse, error, message in cases:
        with session_scope(engine) as s, pytest.raises(error) as exc:
            create_gold_pair(s, engineer, prompt_id, better, worse)
        assert str(exc.value) == message
    with session_scope(engine) as s:
        assert (count(s, Pair), count(s, Generation)) == (0, 0)


def test_pii_is_scrubbed_from_gold_texts(gold):
    engine, engineer, _, prompts = gold
    with session_scope(engine) as s:
        pair_id = create_gold_pair(s, engineer, prompts[0], BETTER + " Call 0113 496 0000.", WORSE)
    with session_scope(engine) as s:
        pair = s.get(Pair, pair_id)
        texts = pair.generation_a.text + pair.generation_b.text
        assert "0113 496 0000" not in texts and "Otley Road Kitchen" in texts


def test_only_engineers_and_admins_manage_gold_pairs(gold):
    engine, engineer, reviewer, prompts = gold
    admin = login_as(engine, "boss", roles=["admin"])
    lead = login_as(engine, "lead", roles=["lead"])
    pair_id = make_pairs(engine, "en-GB-leeds", 1)[0]
    with session_scope(engine) as s:
        for actor in (reviewer, lead):
            with pytest.raises(PermissionDenied, match="lacks the role engineer or admin"):
                create_gold_pair(s, actor, prompts[0], BETTER, WORSE)
            with pytest.raises(PermissionDenied):
                mark_gold(s, actor, pair_id, "a")
            with pytest.raises(PermissionDenied):
                unmark_gold(s, actor, pair_id)
        with pytest.raises(AuthError):
            create_gold_pair(s, None, prompts[0], BETTER, WORSE)
        assert create_gold_pair(s, admin, prompts[1], BETTER, WORSE) > 0
    with session_scope(engine) as s:
        assert count(s, Pair) == 2 and not s.get(Pair, pair_id).is_gold


def test_mark_and_unmark(gold):
    engine, engineer, _, _ = gold
    pair_id = make_pairs(engine, "en-GB-leeds", 1)[0]
    with session_scope(engine) as s:
        with pytest.raises(ValidationError, match=r"^choice: 'left' is not one of a, b, tie, both_bad$"):
            mark_gold(s, engineer, pair_id, "left")
        with pytest.raises(NotFound, match=r"^pair_id: pair 424242 does not exist$"):
            mark_gold(s, engineer, 424242, "a")
        mark_gold(s, engineer, pair_id, "tie")
        mark_gold(s, engineer, pair_id, "tie")  # unchanged: no second event
    with session_scope(engine) as s:
        pair = s.get(Pair, pair_id)
        assert pair.is_gold and pair.gold_choice == Choice.tie
        mark_gold(s, engineer, pair_id, "b")
    with session_scope(engine) as s:
        assert s.get(Pair, pair_id).gold_choice == Choice.b
        unmark_gold(s, engineer, pair_id)
        unmark_gold(s, engineer, pair_id)  # not gold any more: nothing to do
    with session_scope(engine) as s:
        pair = s.get(Pair, pair_id)
        assert (pair.is_gold, pair.gold_choice) == (False, None)
        events = s.execute(select(AuditEvent.action, AuditEvent.user_id, AuditEvent.entity_id, AuditEvent.details)
                           .order_by(AuditEvent.id).where(AuditEvent.entity == "pair")).all()
        assert [tuple(e) for e in events] == [
            ("mark_gold", engineer.id, pair_id, {"gold_choice": "tie", "previous": None}),
            ("mark_gold", engineer.id, pair_id, {"gold_choice": "b", "previous": "tie"}),
            ("unmark_gold", engineer.id, pair_id, {"previous": "b"}),
        ]


def _vote(s, pair: Pair, username: str, choice: str, source: str = "review") -> None:
    user = s.scalar(select(User).where(User.username == username))
    s.add(Vote(pair_id=pair.id, user_id=user.id, region_id=pair.region_id, choice=Choice(choice),
               shown_left=Side.a, seconds_taken=8.0, source=source))


def test_gold_pairs_lists_votes_and_accuracy(gold):
    engine, engineer, _, prompts = gold
    login_as(engine, "rev2", regions=["en-GB-leeds"])
    with session_scope(engine) as s:
        first = create_gold_pair(s, engineer, prompts[0], BETTER, WORSE, seed=0)
        second = create_gold_pair(s, engineer, prompts[1], BETTER, WORSE, seed=0)
    side = expected_side(0)
    other = "b" if side == "a" else "a"
    with session_scope(engine) as s:
        pair = s.get(Pair, first)
        _vote(s, pair, "rev", side)
        _vote(s, pair, "rev2", other)
        _vote(s, pair, "import", other, source="import")  # the import account's votes are not reviews
    with session_scope(engine) as s:
        listed = gold_pairs(s, engineer, "en-GB-leeds")
        brief = s.get(Prompt, prompts[0]).text
        assert gold_pairs(s, engineer, "en-AU-perth") == [] and gold_pairs(s, engineer) == listed
    texts = {"a": BETTER, "b": WORSE} if side == "a" else {"a": WORSE, "b": BETTER}
    assert [row["id"] for row in listed] == [second, first]  # newest first
    assert listed[1] == {"id": first, "region": "en-GB-leeds", "brief": brief, **texts, "gold_choice": side,
                         "votes": 2, "correct": 1, "accuracy": 0.5}
    assert (listed[0]["votes"], listed[0]["correct"], listed[0]["accuracy"]) == (0, 0, None)

    with session_scope(engine) as s:
        quality = reviewer_quality(vote_records(s)).set_index("user")
    assert list(quality.index) == ["rev", "rev2"]
    assert quality.loc["rev", ["gold_votes", "gold_accuracy"]].tolist() == [1, 1.0]
    assert quality.loc["rev2", ["gold_votes", "gold_accuracy"]].tolist() == [1, 0.0]


def test_gold_answer_decides_the_training_preference(gold):
    from collect.datasets import preference_rows

    engine, engineer, _, prompts = gold
    login_as(engine, "rev2", regions=["en-GB-leeds"])
    with session_scope(engine) as s:
        pair_id = create_gold_pair(s, engineer, prompts[0], BETTER, WORSE, seed=0)
    wrong = "b" if expected_side(0) == "a" else "a"
    with session_scope(engine) as s:
        pair = s.get(Pair, pair_id)
        _vote(s, pair, "rev", wrong)  # two reviewers pick the worse output; the known answer still wins
        _vote(s, pair, "rev2", wrong)
    with session_scope(engine) as s:
        rows, stats = preference_rows(s, prompt_format="text")
    (row,) = [r for r in rows if r["pair_id"] == pair_id]
    assert (row["chosen"], row["rejected"], row["kind"], row["margin"], row["agreement"]) == (
        BETTER, WORSE, "gold", 1.0, 0.0)
    assert stats.pairs_kept == 1


def test_prompt_options(gold):
    engine, engineer, _, prompts = gold
    with session_scope(engine) as s:
        options = prompt_options(s, engineer, "en-GB-leeds")
        first = s.get(Prompt, prompts[0])
    assert [pid for pid, _ in options] == prompts
    assert options[0][1] == f"ad copy: {first.text}"


def _data_page():
    from ui.pages import data as data_page

    data_page.render()


def test_data_page_creates_and_lists_gold_pairs(gold):
    engine, _, _, prompts = gold
    at = AppTest.from_function(_data_page, default_timeout=30)
    at.session_state["geoalign_user"] = login_as(engine, "eng2", roles=["engineer"])
    at.run()
    assert not at.exception
    assert at.expander[0].label.startswith("Gold pairs")
    assert at.selectbox(key="gold_region").options == ["en-AU-perth", "en-GB-leeds"]
    at.selectbox(key="gold_region").select("en-GB-leeds").run()
    assert at.selectbox(key="gold_prompt").value == prompts[0]
    assert "No gold pairs in en-GB-leeds yet." in [c.value for c in at.caption]
    at.text_area(key="gold_better").input(BETTER)
    at.text_area(key="gold_worse").input(BETTER).run()
    at.button(key="gold_create").click().run()
    assert at.error[0].value == "worse: the worse output is the same text as the better one"
    at.text_area(key="gold_worse").input(WORSE)
    at.button(key="gold_create").click().run()
    assert not at.exception and "reviewers of en-GB-leeds will meet it" in at.success[0].value
    frame = at.dataframe[0].value
    with session_scope(engine) as s:
        brief = s.get(Prompt, prompts[0]).text
    assert frame["brief"].tolist() == [brief] and frame["gold_choice"].tolist() in (["a"], ["b"])


def test_gold_lists_refuse_a_reviewer(gold):
    """The gold answers are what reviewers are measured against: only engineers and admins may list them."""
    engine, _, reviewer, _ = gold
    with session_scope(engine) as s:
        with pytest.raises(PermissionDenied, match="engineer or admin"):
            gold_pairs(s, reviewer, "en-GB-leeds")
        with pytest.raises(PermissionDenied, match="engineer or admin"):
            prompt_options(s, reviewer, "en-GB-leeds")
        with pytest.raises(AuthError):
            gold_pairs(s, None)
