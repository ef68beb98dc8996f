"""The generation API: generation, validation (422), keys (401), region scopes (403), banned terms, switching."""

import re
from collections import Counter

import pytest
from fastapi.testclient import TestClient

from align.deploy import deploy
from align.serve import create_app
from db.apikeys import create_key, revoke_key
from db.models import ModelVersion
from db.session import session_scope

ITEM = {"id": "x1", "brief": "Ad copy for a Headingley café's porridge deal.", "task_type": "ad_copy"}


@pytest.fixture
def api(loaded, tiny_model):
    with session_scope(loaded) as s:
        s.add(ModelVersion(name="base", base_model=str(tiny_model)))
        s.flush()
        deploy(s, "en-GB-leeds", "base")
        keys = {"leeds": create_key(s, "cms-leeds", ["en-GB-leeds"]), "perth": create_key(s, "cms-perth",
                                                                                       ["en-AU-perth"])}
    return TestClient(create_app(loaded, max_batch=50)), keys, loaded


def post(client, key, body):
    return client.post("/v1/generate", json=body, headers={"Authorization": f"Bearer {key}"} if key else {})


def test_generates_one_output_per_item(api):
    client, keys, _ = api
    body = {"region": "en-GB-leeds", "items": [ITEM, {**ITEM, "id": "x2", "task_type": "email_subject"}],
            "params": {"max_new_tokens": 12, "seed": 1}}
    r = post(client, keys["leeds"], body)
    assert r.status_code == 200, r.text
    data = r.json()
    assert data["version"] == "base" and [o["id"] for o in data["outputs"]] == ["x1", "x2"]
    assert all(o["text"] and o["banned_terms_present"] == [] for o in data["outputs"])
    assert post(client, keys["leeds"], body).json() == data  # same seed, same copy
    assert client.get("/v1/regions", headers={"X-API-Key": keys["leeds"]}).json() == [
        {"region": "en-GB-leeds", "version": "base"}]
    assert "/v1/generate" in client.get("/openapi.json").json()["paths"]


@pytest.mark.parametrize("change, field", [
    ({"params": {"temperature": 0}}, "temperature"),
    ({"params": {"max_new_tokens": 5000}}, "max_new_tokens"),
    ({"items": [{**ITEM, "task_type": "poster"}]}, "task_type"),
    ({"items": [{**ITEM, "brief": ""}]}, "brief"),
    ({"items": []}, "items"),
    ({"items": [ITEM] * 51}, "items"),
])
def test_bad_input_is_a_422_naming_the_field(api, change, field):
    client, keys, _ = api
    r = post(client, keys["leeds"], {"region": "en-GB-leeds", "items": [ITEM]} | change)
    assert r.status_code == 422
    assert field in r.text


def test_keys_are_required_and_scoped_to_regions(api):
    client, keys, engine = api
    body = {"region": "en-GB-leeds", "items": [ITEM], "params": {"max_new_tokens": 4}}
    assert post(client, None, body).status_code == 401
    assert post(client, "ga_not-a-key", body).status_code == 401
    r = post(client, keys["perth"], body)
    assert r.status_code == 403 and "en-GB-leeds" in r.json()["detail"]
    with session_scope(engine) as s:
        revoke_key(s, "cms-leeds")
    assert post(client, keys["leeds"], body).status_code == 401
    big = client.post("/v1/generate", content=b"x" * 1_000_001, headers={"X-API-Key": keys["perth"],
                                                                          "content-type": "application/json"})
    assert big.status_code == 413


def test_a_banned_term_never_appears_in_200_outputs(api):
    client, keys, _ = api

    def run(ban):
        texts = []
        for seed in range(4):
            body = {"region": "en-GB-leeds", "items": [ITEM] * 50, "ban": ban,
                    "params": {"max_new_tokens": 24, "temperature": 1.0, "seed": seed}}
            r = post(client, keys["leeds"], body)
            assert r.status_code == 200, r.text
            texts += [o["text"] for o in r.json()["outputs"]]
        return texts

    free = run([])
    term, count = Counter(w.lower() for t in free for w in re.findall(r"[A-Za-z]{4,}", t)).most_common(1)[0]
    assert len(free) == 200 and count >= 20
    constrained = run([term])
    assert len(constrained) == 200
    assert [t for t in constrained if re.search(rf"(?<!\w){term}(?!\w)", t, re.IGNORECASE)] == []


def test_switching_the_deployed_version_needs_no_restart(api, tmp_path, tiny_model):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    client, keys, engine = api
    lora = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model),
                          LoraConfig(r=4, target_modules="all-linear", init_lora_weights=False))
    lora.save_pretrained(tmp_path / "v1")
    body = {"region": "en-GB-leeds", "items": [ITEM], "params": {"max_new_tokens": 12, "seed": 2}}
    before = post(client, keys["leeds"], body).json()
    with session_scope(engine) as s:
        base = s.query(ModelVersion).filter_by(name="base").one()
        s.add(ModelVersion(name="v1", base_model=str(tiny_model), adapter_path=str(tmp_path / "v1"),
                           parent_id=base.id))
        s.flush()
        deploy(s, "en-GB-leeds", "v1")
    after = post(client, keys["leeds"], body).json()
    assert after["version"] == "v1" and after["outputs"][0]["text"] != before["outputs"][0]["text"]
    with session_scope(engine) as s:
        deploy(s, "en-GB-leeds", "base")
    assert post(client, keys["leeds"], body).json() == before  # back on the base: the adapter is switched off


def test_required_terms_appear_in_every_output(api):
    client, keys, _ = api
    body = {"region": "en-GB-leeds", "items": [ITEM] * 20, "require": ["Kirkstall"],
            "params": {"max_new_tokens": 16, "temperature": 1.0, "seed": 4}}
    r = post(client, keys["leeds"], body)
    assert r.status_code == 200, r.text
    outputs = r.json()["outputs"]
    assert all(re.search(r"(?<!\w)Kirkstall(?!\w)", o["text"]) for o in outputs)
    assert all(o["required_terms_missing"] == [] for o in outputs)
    r = post(client, keys["leeds"], body | {"ban": ["kirkstall"]})
    assert r.status_code == 422 and "require" in r.json()["detail"]
    r = post(client, keys["leeds"], body | {"require": ["Kirkstall Abbey ruins by the river"],
                                            "params": {"max_new_tokens": 2}})
    assert r.status_code == 422 and "too short for the required terms" in r.json()["detail"]
