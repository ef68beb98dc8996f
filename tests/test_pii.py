"""PII scrubbing: each type becomes its placeholder, counts never hold values, ordinary copy is left alone."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from collect.pii import PII_TYPES, scrub, scrub_many


@pytest.mark.parametrize(("text", "country", "expected"), [
    ("Escríbenos a hola@panaderia.es y te contestamos.", "ES", "Escríbenos a [EMAIL] y te contestamos."),
    ("Questions? Email Jo.Bloggs+promo@cafe-ancoats.co.uk!", "GB", "Questions? Email [EMAIL]!"),
    ("Bewerbungen an Info@Bäckerei-Müller.de, danke.", "DE", "Bewerbungen an [EMAIL], danke."),
    ("Call us on 0161 496 0123.", "GB", "Call us on [PHONE]."),
    ("Call us on +44 (0)20 7946 0958 7 days a week.", "GB", "Call us on [PHONE] 7 days a week."),
    ("Call (512) 555-0123 or 1-800-555-0199.", "US", "Call [PHONE] or [PHONE]."),
    ("Give us a bell on 0412 345 678 or (03) 9123 4567.", "AU", "Give us a bell on [PHONE] or [PHONE]."),
    ("Ruf uns an unter +49 89 1234567 oder 089/1234567.", "DE", "Ruf uns an unter [PHONE] oder [PHONE]."),
    ("Llámanos al +34 91 123 45 67 o al 612 34 56 78.", "ES", "Llámanos al [PHONE] o al [PHONE]."),
    ("Márcanos al 55 1234 5678 o al +52 1 55 1234 5678.", "MX", "Márcanos al [PHONE] o al [PHONE]."),
    ("Card 4111 1111 1111 1111, exp 09/27.", "GB", "Card [CARD], exp 09/27."),
    ("Tarjeta 5500-0000-0000-0004 y Amex 3782 822463 10005.", "ES", "Tarjeta [CARD] y Amex [CARD]."),
    ("Überweisung an DE89 3704 0044 0532 0130 00 bitte.", "DE", "Überweisung an [IBAN] bitte."),
    ("IBAN: GB29NWBK60161331926819.", "GB", "IBAN: [IBAN]."),
    ("Transfiere a ES91 2100 0418 4502 0005 1332.", "MX", "Transfiere a [IBAN]."),
    ("Router-Login unter http://192.168.178.1/ im WLAN.", "DE", "Router-Login unter http://[IP]/ im WLAN."),
    ("Blocked 2001:db8::42 and [2a00:1450::1]:443.", "AU", "Blocked [IP] and [[IP]]:443."),
])
def test_each_type_becomes_its_placeholder(text, country, expected):
    assert scrub(text, country)[0] == expected


def test_international_numbers_are_found_without_a_region():
    assert scrub("Call +44 161 496 0123 or +49 89 1234567", None) == ("Call [PHONE] or [PHONE]", {"PHONE": 2})


def test_counter_counts_per_type_and_never_holds_values():
    text = ("Mail anna@example.de or ben@example.de, call 089 1234567, card 4111 1111 1111 1111, "
            "IBAN DE89 3704 0044 0532 0130 00, server 10.0.0.12.")
    out, found = scrub(text, "DE")
    assert found == {"EMAIL": 2, "PHONE": 1, "CARD": 1, "IBAN": 1, "IP": 1}
    assert set(found) <= set(PII_TYPES)
    for value in ("anna@example.de", "089 1234567", "4111", "DE89", "10.0.0.12"):
        assert value not in out and value not in repr(found)


def test_scrub_many_sums_the_counts():
    texts, found = scrub_many(["a@b.com", "Nothing here", "Call 0161 496 0123"], "GB")
    assert texts == ["[EMAIL]", "Nothing here", "Call [PHONE]"]
    assert found == {"EMAIL": 1, "PHONE": 1}


@pytest.mark.parametrize(("text", "country"), [
    ("Tickets £12.50 (£10 concessions), doors 7:30pm on 14/02/2026; 50% off till 2026-03-01.", "GB"),
    ("Find us at 52 Thomas St, Manchester M4 1HN. Follow @CafeAncoats #manchesterfood", "GB"),
    ("Book at https://www.cafe-ancoats.co.uk/book?date=2026-02-14&party=4 or www.rallyandgrind.com.au", "GB"),
    ("Austin, TX 78701 · 512 Congress Ave, Suite 1200 · $1,299.99 · since 1998", "US"),
    ("Level 3, 120 Collins St, Melbourne VIC 3000. From $35 an hour, 6:30am till late.", "AU"),
    ("Leopoldstraße 123, 80331 München. Maß 15,80 €, am 12.05.2025 ab 19:30 Uhr. 3.000 Plätze, 30 % Rabatt.", "DE"),
    ("Calle de Atocha 27, 28013 Madrid. Desde 12,90 €, 2x1 hasta el 31/12/2025, de 10:00 a 14:00 h.", "ES"),
    ("Col. Roma Norte, 06700 CDMX. $149 MXN o $2,499 a 12 meses. #RoscaDeReyes @PanaderiaLaRiberena", "MX"),
    ("Gutscheincode 0123 45, Bestellnummer 2025-0815-4711, Version 2.4.1.", "DE"),
])
def test_ordinary_copy_is_unchanged(text, country):
    assert scrub(text, country) == (text, {})


def test_invalid_look_alikes_are_left_alone():
    for text in ("Card 4111 1111 1111 1112", "IBAN DE89 3704 0044 0532 0130 01", "GB29 NWBK 6016 1331 9268 18",
                 "Address 999.168.1.1", "Call 0161 000 00"):
        assert scrub(text, "GB") == (text, {})


def test_scrub_is_idempotent():
    once, _ = scrub("Ruf +49 89 1234567 an, Mail info@huber.de, Karte 4111 1111 1111 1111, IP ::1 "
                    "oder 10.1.2.3, IBAN DE89370400440532013000.", "DE")
    assert scrub(once, "DE") == (once, {})


@given(st.text(alphabet=st.characters(blacklist_categories=("Nd", "Cs"), blacklist_characters="@")))
def test_text_without_digits_or_at_sign_is_unchanged(text):
    assert scrub(text, "GB") == (text, {})


@pytest.mark.parametrize(("text", "country", "expected"), [
    # UK mobiles reserved for drama (07700 900000-900999): possible for the plan, but not valid
    ("Text Jo on 07700 900123 to book.", "GB", "Text Jo on [PHONE] to book."),
    ("Ring 07700 900 456 or +44 7700 900789.", "GB", "Ring [PHONE] or [PHONE]."),
    ("Call 07700 900123 24 hours a day.", "GB", "Call [PHONE] 24 hours a day."),
    ("Call (555) 555-0100 or 1-555-555-0199.", "US", "Call [PHONE] or [PHONE]."),
])
def test_possible_but_invalid_numbers_are_scrubbed(text, country, expected):
    import phonenumbers

    number = phonenumbers.parse("07700 900123", "GB")
    assert phonenumbers.is_possible_number(number) and not phonenumbers.is_valid_number(number)
    assert scrub(text, country)[0] == expected


@pytest.mark.parametrize("text", ["Use code 0161 000 00 at the till.", "Gutscheincode 0123 45 an der Kasse.",
                                  "Bestellnummer 2025-0815-4711 bitte angeben.", "Código 91 123 45 en caja.",
                                  "Preisliste (Stand: 01.01.2026).", "Order #10234 ships in 3-5 days."])
def test_short_or_unprefixed_codes_are_not_possible_phones(text):
    assert all(scrub(text, country) == (text, {}) for country in ("GB", "DE", "ES", "US", None))


@pytest.mark.parametrize("text", ["Version 1.2.3.4 of the app is out.", "Update to version: 10.0.0.1 today.",
                                  "Firmware 2.0.1.7 fixes the printer.", "Versión 1.2.3.4 disponible.",
                                  "Release 4.3.2.1 is out.", "Get v1.2.3.4 now."])
def test_version_strings_are_not_ips(text):
    assert scrub(text, "GB") == (text, {})


@pytest.mark.parametrize(("text", "expected"), [
    ("The kiosk is at 1.2.3.4 on the Wi-Fi.", "The kiosk is at [IP] on the Wi-Fi."),
    ("Version 2.1 talks to 10.0.0.12 only.", "Version 2.1 talks to [IP] only."),
    ("Blocked 192.168.1.1 and conversion 10.1.2.3.", "Blocked [IP] and conversion [IP]."),
])
def test_ips_near_other_words_are_still_scrubbed(text, expected):
    assert scrub(text, "GB")[0] == expected


@pytest.mark.parametrize("card", ["2221 0000 0000 0009", "2223 0031 2200 3222", "2223-0000-4840-0011",
                                  "2720999999999996", "2500 0000 0000 0001"])
def test_two_series_mastercard_is_a_card(card):
    assert scrub(f"Card {card}, exp 09/27.", "GB") == ("Card [CARD], exp 09/27.", {"CARD": 1})
