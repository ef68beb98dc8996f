import pytest

from collect.layouts import LayoutError, detect_layout, normalise, split_implicit


def test_explicit():
    assert normalise({"prompt": "P", "chosen": "good", "rejected": "bad"}) == ("explicit", "P", "good", "bad")


def test_implicit_hh_dialogue_splits_at_the_last_assistant_turn():
    chosen = "\n\nHuman: Slogan for a Munich bakery?\n\nAssistant: Servus! Frische Brezn ab 6 Uhr."
    rejected = "\n\nHuman: Slogan for a Munich bakery?\n\nAssistant: Howdy y'all, fresh bagels!"
    layout, prompt, c, r = normalise({"chosen": chosen, "rejected": rejected})
    assert layout == "implicit"
    assert prompt == "\n\nHuman: Slogan for a Munich bakery?\n\nAssistant:"
    assert (c, r) == (" Servus! Frische Brezn ab 6 Uhr.", " Howdy y'all, fresh bagels!")
    assert prompt + c == chosen and prompt + r == rejected


def test_implicit_multi_turn_keeps_earlier_turns_in_the_prompt():
    base = "\n\nHuman: Hi\n\nAssistant: Hello!\n\nHuman: A tagline?\n\nAssistant:"
    prompt, c, r = split_implicit(base + " Proper mint.", base + " Totally awesome.")
    assert prompt == base and c == " Proper mint."


def test_implicit_without_markers_never_cuts_a_word():
    prompt, c, r = split_implicit("Write a tagline: Buzzing", "Write a tagline: Bustling")
    assert prompt == "Write a tagline: " and (c, r) == ("Buzzing", "Bustling")


def test_implicit_without_shared_prefix_is_an_error():
    with pytest.raises(LayoutError) as err:
        normalise({"chosen": "abc", "rejected": "xyz"})
    assert err.value.field == "chosen"


def test_conversational_with_and_without_prompt():
    chosen = [{"role": "user", "content": "Brief"}, {"role": "assistant", "content": "Good copy"}]
    rejected = [{"role": "user", "content": "Brief"}, {"role": "assistant", "content": "Bad copy"}]
    assert normalise({"chosen": chosen, "rejected": rejected}) == ("conversational", "Brief", "Good copy", "Bad copy")
    row = {"prompt": [{"role": "system", "content": "Be local"}, {"role": "user", "content": "Brief 2"}],
           "chosen": [{"role": "assistant", "content": "A"}], "rejected": [{"role": "assistant", "content": "B"}]}
    assert detect_layout(row) == "conversational"
    assert normalise(row) == ("conversational", "Brief 2", "A", "B")


def test_conversational_errors_name_the_field():
    with pytest.raises(LayoutError) as err:
        normalise({"chosen": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "a"}],
                   "rejected": [{"role": "user"}]})
    assert err.value.field == "rejected"
