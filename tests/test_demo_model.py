import json

from transformers import AutoModelForCausalLM, AutoTokenizer

from align.demo_model import DemoModelConfig, is_built, train_tokenizer
from collect.prompting import format_prompt


def test_builds_an_ordinary_hugging_face_directory(tiny_model):
    assert is_built(tiny_model)
    report = json.loads((tiny_model / "geoalign_demo.json").read_text())
    assert 1_000_000 <= report["parameters"] <= 5_000_000
    assert report["final_loss"] < report["train_loss"] * 1.5 and report["steps"] > 0
    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    assert model.config.model_type == "qwen2"
    assert sum(p.numel() for p in model.parameters()) == report["parameters"]
    assert tokenizer.eos_token == "<|endoftext|>" and tokenizer.pad_token == "<|pad|>"


def test_learned_the_corpus(tiny_model):
    """After brief pretraining the model predicts its corpus far better than chance (uniform over the vocab)."""
    import math

    import torch

    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    text = format_prompt("Leeds", "en-GB", "email_subject", "Email subject for a Leeds cinema's half-term kids' club.")
    enc = tokenizer(text + "Half-term sorted: kids' films at Hyde Park Picture House", return_tensors="pt")
    with torch.no_grad():
        loss = model(**enc, labels=enc["input_ids"]).loss.item()
    assert loss < 0.5 * math.log(len(tokenizer))


def test_default_size_is_within_budget():
    from transformers import Qwen2Config, Qwen2ForCausalLM

    c = DemoModelConfig()
    model = Qwen2ForCausalLM(
        Qwen2Config(
            vocab_size=c.vocab_size,
            hidden_size=c.hidden_size,
            intermediate_size=c.intermediate_size,
            num_hidden_layers=c.num_hidden_layers,
            num_attention_heads=c.num_attention_heads,
            num_key_value_heads=c.num_key_value_heads,
            tie_word_embeddings=True,
        )
    )
    assert 1_000_000 <= sum(p.numel() for p in model.parameters()) <= 5_000_000


def test_tokenizer_round_trips_every_language():
    tok = train_tokenizer(["Servus München", "¡Qué padre, CDMX!", "Ey up, Leeds"], vocab_size=400)
    for text in ["Grüß Gott am Viktualienmarkt 🥨", "Año nuevo en Coyoacán", "Arvo brekkie, mate"]:
        assert tok.decode(tok(text)["input_ids"]) == text
