"""One prompt builder: a brief becomes system + user messages, rendered through the chat template when the
tokenizer has one and as plain text when it has not; the reward model reads conversations as RewardTrainer does."""

from __future__ import annotations

import pytest
from transformers import AutoTokenizer

from align.sampling import length_batches
from collect.prompting import BriefContext, dataset_completion, dataset_prompt, format_for, messages, render
from rewards.reward_model import RewardScorer, load_backbone

AUSTIN = {"name": "Austin, Texas", "locale": "en-US",
          "climate_by_month": {"September": "Still hot, mid-30s°C; college football season kicks off."}}


def test_messages_carry_region_month_and_task_guidance():
    ctx = BriefContext.of(AUSTIN, "social_post", "  Social post for a BBQ joint on the first Longhorns home game ",
                          month=9)
    system, user = messages(ctx)
    assert system["role"] == "system" and user == {"role": "user", "content": ctx.brief}
    assert ctx.brief == "Social post for a BBQ joint on the first Longhorns home game"
    assert "Austin, Texas (en-US)" in system["content"] and "American English" in system["content"]
    assert "September: Still hot, mid-30s°C" in system["content"]  # the line the reviewer sees, too
    assert "at most 280 characters" in system["content"]
    assert ctx.season == "September: Still hot, mid-30s°C; college football season kicks off."


def test_a_region_without_a_climate_note_leaves_the_line_out():
    ctx = BriefContext.of({"name": "Leeds", "locale": "en-GB"}, "ad_copy", "Ad for a Leeds market", month=3)
    assert ctx.season == "" and "This month" not in messages(ctx)[0]["content"]


def test_render_uses_the_chat_template_or_falls_back_to_plain_text(tiny_model, tiny_chat_model):
    ctx = BriefContext.of(AUSTIN, "email_subject", "Subject line for a taco truck's new breakfast menu", month=9)
    plain, chat = AutoTokenizer.from_pretrained(tiny_model), AutoTokenizer.from_pretrained(tiny_chat_model)
    assert (format_for(plain), format_for(chat)) == ("text", "conversational")
    assert render(plain, ctx) == ("Region: Austin, Texas (en-US)\nTask: email subject line\n"
                                  "Brief: Subject line for a taco truck's new breakfast menu\nCopy:\n")
    text = render(chat, ctx)
    assert text.startswith("<|im_start|>system\nYou are a local copywriter in Austin, Texas")
    assert text.endswith("<|im_start|>user\nSubject line for a taco truck's new breakfast menu<|im_end|>\n"
                         "<|im_start|>assistant\n")


def test_dataset_formats():
    ctx = BriefContext.of(AUSTIN, "ad_copy", "Ad for a South Congress boot shop", month=9)
    assert dataset_prompt(ctx, "conversational") == messages(ctx)
    assert dataset_prompt(ctx, "text").startswith("Region: Austin, Texas (en-US)\n")
    assert dataset_prompt(ctx, "raw") == "Ad for a South Congress boot shop"
    assert dataset_completion("Howdy!", "conversational") == [{"role": "assistant", "content": "Howdy!"}]
    assert dataset_completion("Howdy!", "text") == "Howdy!"
    with pytest.raises(ValueError, match="unknown prompt format 'chatml'"):
        dataset_prompt(ctx, "chatml")


def test_length_batches_group_similar_lengths_and_cover_every_prompt(tiny_model):
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    prompts = ["a " * n for n in (30, 2, 17, 5, 29, 3, 16)]
    batches = length_batches(tokenizer, prompts, 3)
    assert sorted(i for b in batches for i in b) == list(range(7))
    assert batches == [[1, 5, 3], [6, 2, 4], [0]]  # shortest first; similar lengths share a batch


def test_the_reward_model_scores_conversations_as_reward_trainer_tokenizes_them(tmp_path):
    """The encoder template is saved with the model; scoring a message list gives the ids RewardTrainer trained
    on, and the system context (region, month, task) is part of what the reward model reads."""
    from datasets import Dataset
    from trl import RewardConfig, RewardTrainer

    model, tokenizer = load_backbone(None)
    model.save_pretrained(tmp_path / "rm")
    tokenizer.save_pretrained(tmp_path / "rm")
    ctx = BriefContext.of(AUSTIN, "social_post", "Post for a BBQ joint on game day", month=9)
    row = {"prompt": messages(ctx), "chosen": dataset_completion("Y'all, brisket's on!", "conversational"),
           "rejected": dataset_completion("Great food today.", "conversational")}
    trainer = RewardTrainer(model=model, processing_class=tokenizer, train_dataset=Dataset.from_list([row] * 2),
                            args=RewardConfig(output_dir=str(tmp_path / "out"), report_to="none", use_cpu=True,
                                              bf16=False, max_steps=1))
    trained_ids = trainer.train_dataset[0]["chosen_ids"]
    scorer = RewardScorer(tmp_path / "rm")
    text, special = scorer._text(row["prompt"], row["chosen"])
    assert not special and scorer.tokenizer(text, add_special_tokens=False)["input_ids"] == trained_ids
    assert "Austin, Texas (en-US)" in text  # the region context reaches the reward model
    as_string = scorer.score([row["prompt"]], ["Y'all, brisket's on!"])  # GRPO may pass the completion as text
    as_message = scorer.score([row["prompt"]], [row["chosen"]])
    assert as_string == pytest.approx(as_message)
