"""Constrained batch generation, `geoalign generate` and merged-weight export, on the tiny model."""

import json
import re
from collections import Counter

import pytest
import torch

from align.generate import Constraints, export_merged, generate_constrained, generation_controls, read_prompts
from align.sampling import DecodingParams, load_policy
from collect.prompting import format_prompt
from db.errors import ValidationError

PARAMS = DecodingParams(max_new_tokens=24, temperature=1.0)


@pytest.fixture(scope="module")
def policy(tiny_model):
    return load_policy(str(tiny_model))


def prompts(n: int) -> list[str]:
    briefs = ["Ad copy for a Headingley café's porridge deal.", "Email subject for a Perth surf school sale.",
              "Social post for a Leeds market in July.", "Meta description for a Fremantle bakery."]
    return [format_prompt("Leeds", "en-GB", "ad_copy", briefs[i % len(briefs)]) for i in range(n)]


def words(texts):
    return Counter(w.lower() for t in texts for w in re.findall(r"[A-Za-z]{4,}", t))


def test_a_banned_term_never_appears_while_it_does_without_the_constraint(policy):
    model, tokenizer = policy
    free, _ = generate_constrained(model, tokenizer, prompts(200), PARAMS, Constraints(), seed=3, batch_size=50,
                                   progress=False)
    term, count = words(free).most_common(1)[0]
    assert count >= 20  # the tiny model writes it often when free to
    banned = Constraints(banned=(term,))
    texts, report = generate_constrained(model, tokenizer, prompts(200), PARAMS, banned, seed=3, batch_size=50,
                                         progress=False)
    assert [t for t in texts if banned.violations(t)] == [] and report.still_violating == []
    decoding_only, _ = generate_constrained(model, tokenizer, prompts(200), PARAMS, banned, seed=3, batch_size=50,
                                            retries=0, progress=False)
    # the decoding controls do the work; the re-sampling safety net only catches rare re-spellings
    assert sum(bool(banned.violations(t)) for t in decoding_only) < count // 4


def test_boosted_terms_appear_more_often(policy):
    model, tokenizer = policy
    free, _ = generate_constrained(model, tokenizer, prompts(100), PARAMS, Constraints(), seed=5, batch_size=50,
                                   progress=False)
    # a one-token word the model knows but rarely picks (a longer term's bias only completes it once started)
    ranked = [w for w, _ in words(free).most_common()
              if len(tokenizer(" " + w, add_special_tokens=False)["input_ids"]) == 1]
    term = ranked[len(ranked) // 2]
    boosted, _ = generate_constrained(model, tokenizer, prompts(100), PARAMS, Constraints(boosted=(term,), boost=4.0),
                                      seed=5, batch_size=50, progress=False)
    assert words(boosted)[term] > words(free)[term]


def test_a_required_term_appears_in_every_output(policy):
    model, tokenizer = policy
    free, _ = generate_constrained(model, tokenizer, prompts(60), PARAMS, Constraints(), seed=9, batch_size=30,
                                   progress=False)
    term = "Fremantle"
    assert sum(term.lower() in t.lower() for t in free) < 30  # the tiny model does not write it every time
    required = Constraints(required=(term,))
    texts, report = generate_constrained(model, tokenizer, prompts(60), PARAMS, required, seed=9, batch_size=30,
                                         retries=0, progress=False)  # decoding alone, no re-sampling
    assert [t for t in texts if required.missing(t)] == [] and report.still_violating == []
    two = Constraints(required=("Fremantle", "porridge"), banned=("Leeds",))
    texts, _ = generate_constrained(model, tokenizer, prompts(30), PARAMS, two, seed=2, batch_size=30, retries=0,
                                    progress=False)
    assert all(not two.missing(t) and not two.violations(t) for t in texts)
    with pytest.raises(ValidationError, match="too short for the required terms"):
        generate_constrained(model, tokenizer, prompts(1), DecodingParams(max_new_tokens=1), two, progress=False)
    with pytest.raises(ValidationError, match="contain a banned term"):
        Constraints(required=("Leeds Market",), banned=("leeds",))


def test_controls_cover_the_usual_spellings(policy):
    _, tokenizer = policy
    controls = generation_controls(tokenizer, Constraints(banned=("Leeds",), boosted=("Headingley",)))
    banned = {tokenizer.decode(ids) for ids in controls["bad_words_ids"]}
    assert {"Leeds", " Leeds", "leeds", " leeds", "LEEDS", " LEEDS"} <= banned
    assert {tokenizer.decode(list(ids)) for ids in controls["sequence_bias"]} == {"Headingley", " Headingley"}
    assert generation_controls(tokenizer, Constraints()) == {}


def test_region_constraints_and_violations():
    c = Constraints.for_region(["Yorkshire pudding", " "], ["ginnel"], ban=["Rival Co"], boost=["ginnel", "ey up"])
    assert c.banned == ("Yorkshire pudding", "Rival Co") and c.boosted == ("ginnel", "ey up")
    assert c.violations("Try our YORKSHIRE PUDDING today") == ["Yorkshire pudding"]
    assert c.violations("Rival Coffee") == []  # whole words only
    assert Constraints.for_region(["x"], ["y"], use_region=False) == Constraints()


def test_input_errors_name_file_row_and_field(tmp_path):
    bad = tmp_path / "briefs.csv"
    bad.write_text("brief,task_type\nFirst brief,ad_copy\n,ad_copy\n")
    with pytest.raises(ValidationError, match=r"briefs.csv: row 3: field brief is empty"):
        read_prompts(bad)
    bad.write_text("brief,task_type\nA brief,poster\n")
    with pytest.raises(ValidationError, match=r"row 2: field task_type 'poster' is not one of"):
        read_prompts(bad)
    bad.write_text("text\nA brief\n")
    with pytest.raises(ValidationError, match="needs columns brief"):
        read_prompts(bad)


def test_generate_command_writes_one_row_per_brief(loaded, settings, tiny_model, tmp_path, capsys, monkeypatch):
    from cli.main import main
    from db.models import ModelVersion, Region
    from db.session import session_scope

    with session_scope(loaded) as s:
        s.add(ModelVersion(name="base", base_model=str(tiny_model)))
        s.query(Region).filter(Region.code == "en-GB-leeds").one().avoid_terms = ["Leeds"]
    briefs = tmp_path / "briefs.csv"
    briefs.write_text("id,brief,task_type\nb1,Porridge deal in Headingley,ad_copy\nb2,Summer sale,email_subject\n")
    out = tmp_path / "out" / "gen.jsonl"
    assert main(["generate", "--region", "en-GB-leeds", "--version", "base", "--input", str(briefs), "--output",
                 str(out), "--max-new-tokens", "16", "--ban", "porridge"]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in rows] == ["b1", "b2"] and {r["region"] for r in rows} == {"en-GB-leeds"}
    assert all(r["banned_terms_present"] == [] and r["text"] for r in rows)
    assert "2 outputs written" in capsys.readouterr().out
    assert main(["generate", "--region", "en-GB-leeds", "--version", "v9", "--input", str(briefs), "--output",
                 str(out)]) == 2
    assert "model version 'v9' does not exist" in capsys.readouterr().err


def test_export_merges_the_adapter_into_plain_weights(tiny_model, tmp_path):
    from peft import LoraConfig, PeftModel, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(tiny_model)
    lora = get_peft_model(base, LoraConfig(r=4, target_modules="all-linear", init_lora_weights=False))
    lora.save_pretrained(tmp_path / "adapter")
    out = export_merged(str(tiny_model), str(tmp_path / "adapter"), tmp_path / "merged")
    assert not (out / "adapter_config.json").exists() and (out / "config.json").exists()
    merged = AutoModelForCausalLM.from_pretrained(out).eval()
    adapted = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model), tmp_path / "adapter").eval()
    plain = AutoModelForCausalLM.from_pretrained(tiny_model).eval()
    ids = torch.tensor([[5, 17, 42, 99, 7]])
    with torch.no_grad():
        assert torch.allclose(merged(ids).logits, adapted(ids).logits, atol=1e-4)
        assert not torch.allclose(merged(ids).logits, plain(ids).logits, atol=1e-3)  # the adapter did something
    with pytest.raises(ValidationError, match="already exists"):
        export_merged(str(tiny_model), None, out)
