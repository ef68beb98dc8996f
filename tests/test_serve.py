"""The generation API: generation, validation (422), keys (401), region scopes (403), banned terms, switching,
body limits (413, 400) and timeouts (504, and the generation stops)."""

import asyncio
import functools
import re
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
from fastapi.testclient import TestClient

import align.serve
from align.deploy import deploy
from align.generate import Constraints, Deadline, DeadlineExceeded, generate_constrained
from align.sampling import DecodingParams, load_policy
from align.serve import Policies, create_app
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


def test_a_chunked_body_is_counted_as_it_arrives(api):
    client, keys, _ = api
    chunks = (b"x" * 100_000 for _ in range(58))  # 5.8 MB sent chunked: there is no Content-Length to check
    r = client.post("/v1/generate", content=chunks, headers={"X-API-Key": keys["leeds"],
                                                             "content-type": "application/json"})
    assert r.status_code == 413 and r.json() == {"detail": "request body over 1000000 bytes"}

    # as a server hands a chunked body over, message by message: reading stops at the limit
    read, sent = [], []

    async def receive():
        read.append(100_000)
        return {"type": "http.request", "body": b"x" * 100_000, "more_body": len(read) < 58}

    async def send(message):
        sent.append(message)

    headers = [(b"x-api-key", keys["leeds"].encode()), (b"content-type", b"application/json"),
               (b"transfer-encoding", b"chunked")]
    asyncio.run(client.app({"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
                            "scheme": "http", "path": "/v1/generate", "raw_path": b"/v1/generate",
                            "query_string": b"", "root_path": "", "headers": headers}, receive, send))
    assert sent[0]["status"] == 413 and sum(read) == 1_100_000


@pytest.mark.parametrize("length", ["abc", "-1", "1e3"])
def test_a_malformed_content_length_is_a_400(api, length):
    client, keys, _ = api
    r = client.post("/v1/generate", content=b"{}", headers={"X-API-Key": keys["leeds"], "content-length": length,
                                                            "content-type": "application/json"})
    assert r.status_code == 400 and "Content-Length" in r.json()["detail"]


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER", "bEaReR"])
def test_the_bearer_scheme_is_case_insensitive(api, scheme):
    client, keys, _ = api
    r = client.get("/v1/regions", headers={"Authorization": f"{scheme}  {keys['leeds']} "})
    assert r.status_code == 200 and r.json() == [{"region": "en-GB-leeds", "version": "base"}]


@pytest.mark.parametrize("header", ["Basic {key}", "{key}", "Bearer", "bearer "])
def test_another_scheme_or_no_key_is_a_401(api, header):
    client, keys, _ = api
    r = client.get("/v1/regions", headers={"Authorization": header.format(key=keys["leeds"])})
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"


def test_a_key_lists_only_its_regions_when_several_are_deployed(api):
    client, keys, engine = api
    with session_scope(engine) as s:
        deploy(s, "en-AU-perth", "base")
        everywhere = create_key(s, "cms-all", [], all_regions=True)

    def listed(key):
        r = client.get("/v1/regions", headers={"X-API-Key": key})
        assert r.status_code == 200, r.text
        return [row["region"] for row in r.json()]

    assert listed(keys["leeds"]) == ["en-GB-leeds"]
    assert listed(keys["perth"]) == ["en-AU-perth"]
    assert listed(everywhere) == ["en-AU-perth", "en-GB-leeds"]


STEP_S = 0.02  # each decoding step of the served model sleeps this long, so a generation outlasts a short timeout


@pytest.fixture
def slow_steps(monkeypatch):
    """The served model, with every forward pass (one per decoding step) slowed by STEP_S and recorded, and the end
    of text ruled out so that a generation runs to ``max_new_tokens``."""
    steps = []

    def load(base_model):
        model, tokenizer = load_policy(base_model)

        @functools.wraps(model.forward)  # generate inspects the forward's signature
        def forward(*args, **kwargs):
            steps.append(time.monotonic())
            time.sleep(STEP_S)
            out = model_forward(*args, **kwargs)
            out.logits[..., tokenizer.eos_token_id] = -float("inf")
            return out

        model_forward, model.forward = model.forward, forward
        return model, tokenizer

    monkeypatch.setattr(align.serve, "load_policy", load)
    return steps


def test_timed_out_generations_are_504s_and_stop(api, slow_steps):
    _, keys, engine = api
    timeout_s, new_tokens = 1.0, 256  # a full generation would take over 5 s
    app = create_app(engine, timeout_s=timeout_s)
    body = {"region": "en-GB-leeds", "items": [ITEM], "params": {"max_new_tokens": new_tokens}}

    def request(_):
        return post(TestClient(app), keys["leeds"], body)

    with ThreadPoolExecutor(4) as pool:  # four at once, as in the incident: they queue for the model
        responses = list(pool.map(request, range(4)))
    ran = len(slow_steps)
    time.sleep(25 * STEP_S)  # time for 25 more steps, were a generation still going after its 504
    assert [r.status_code for r in responses] == [504] * 4
    assert all("longer than 1 s" in r.json()["detail"] for r in responses)
    # each 504 went out once its generation had stopped and the model was free
    assert len(slow_steps) == ran and not app.state.policies.lock.locked()
    # a request decodes only until its deadline (each step takes at least STEP_S), then at most one step more;
    # generations that ran to the end would take 4 * 256 steps
    assert ran <= 4 * (timeout_s / STEP_S + 2)


def test_a_generation_never_starts_after_its_deadline_passed_waiting_for_the_model(tiny_model, slow_steps):
    policies = Policies()
    with policies.lock:  # another request is generating
        with pytest.raises(DeadlineExceeded):
            policies.generate(str(tiny_model), "base", None, [], DecodingParams(max_new_tokens=8), Constraints(),
                              0, deadline=time.monotonic() + 0.05)
    assert policies.model is None and slow_steps == []


def test_the_deadline_stops_decoding_at_the_first_step_past_it(tiny_model):
    model, tokenizer = load_policy(str(tiny_model))
    clock = [0.0]  # one tick per forward pass: the deadline falls after the third step, whatever the machine
    model_forward = model.forward

    @functools.wraps(model_forward)
    def forward(*args, **kwargs):
        clock[0] += 1
        return model_forward(*args, **kwargs)

    model.forward = forward
    prompts = ["Ad copy for a Headingley café:"] * 2
    kirkstall = Constraints(required=("Kirkstall",))  # a text cut short lacks it, which would otherwise retry
    with pytest.raises(DeadlineExceeded):
        generate_constrained(model, tokenizer, prompts, DecodingParams(max_new_tokens=64), kirkstall,
                             deadline=Deadline(3, clock=lambda: clock[0]))
    assert clock[0] == 3  # stopped by the criterion, and no retry was started
    clock[0] = 0.0
    texts, _ = generate_constrained(model, tokenizer, prompts, DecodingParams(max_new_tokens=8), Constraints(),
                                    deadline=Deadline(1000, clock=lambda: clock[0]))
    assert len(texts) == 2 and 1 <= clock[0] <= 8
    ran = clock[0]
    with pytest.raises(DeadlineExceeded):  # already past: nothing runs
        generate_constrained(model, tokenizer, prompts, DecodingParams(max_new_tokens=8), Constraints(),
                             deadline=Deadline(0, clock=lambda: clock[0] + 1000))
    assert clock[0] == ran
