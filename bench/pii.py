"""Recall and false positives of the PII scrubber on a labelled benchmark built from the demo corpus.

    python bench/pii.py                 # --seed N to draw another benchmark, --show-misses to print failures

PII of every type is planted, one value per row, into real demo completions of six regions (en-GB, en-US,
en-AU, de-DE, es-ES, es-MX; a region without its own folder yet borrows carriers of the same language) using
sentences and number formats of that region. A planted value is recalled when it is gone from the scrubbed
row, the row holds its placeholder and the counter says exactly one of that type; "exact" further asks that
the row equal the original with just that value replaced (nothing left over, nothing else touched). False
positives are the share of rows changed at all, measured on the clean demo completions and on "hard
negatives": the same completions with added prices, dates, times, postcodes, handles, URLs and invalid
look-alike numbers. Exits with status 1 when a target (>= 99 % recall per type, <= 1 % false positives) is
missed.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import random
import re
import string
import sys
import time
from collections.abc import Callable
from pathlib import Path

import phonenumbers
from phonenumbers import PhoneNumberFormat as Fmt
from stdnum import iban, luhn
from stdnum.es import ccc

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from collect.pii import PII_TYPES, scrub  # noqa: E402

DEMO_DATA = Path(__file__).resolve().parent.parent / "collect" / "demo_data"
LOCALES = {"en-GB": "GB", "en-US": "US", "en-AU": "AU", "de-DE": "DE", "es-ES": "ES", "es-MX": "MX"}
RECALL_TARGET, FP_TARGET = 99.0, 1.0

# ---------------------------------------------------------------- sentences that carry a value, per locale

EN = {
    "EMAIL": ["Questions? Email {v} and we'll get back to you.", "Bookings via {v}.", "Drop us a line at {v}!",
              "For group bookings, contact Sarah ({v}).", "Send your CV to {v} by Friday.",
              "Reply to {v} to claim your spot."],
    "PHONE": ["Call us on {v}.", "Bookings: {v}", "Questions? Ring {v} any time after 9am.",
              "Text or WhatsApp {v} to reserve a table.", "Ask for Dave on {v}.", "Phone {v} (Mon-Fri).",
              "Call us on {v} 7 days a week."],
    "CARD": ["Paid with card {v}, thanks!", "My card number is {v} if you need it for the deposit.",
             "Please charge the remaining balance to {v}.", "Card: {v}, exp 09/27."],
    "IBAN": ["Bank transfer to IBAN {v}, please.", "Pay the deposit to {v} and quote your surname.",
             "Our account for invoices: {v}.", "IBAN: {v}"],
    "IP": ["The booking kiosk is at {v} on the shop Wi-Fi.", "Blocked login attempts from {v} again.",
           "Set the printer to {v} and restart it.", "Admin panel: http://{v}/admin"],
}
ENGB = {**EN, "PHONE": EN["PHONE"] + ["Give us a ring on {v}.", "Ring the shop on {v} to order."]}
ENUS = {**EN, "PHONE": EN["PHONE"] + ["Call us at {v}.", "Reservations: {v} (call or text).",
                                     "Call {v} 365 days a year."]}
ENAU = {**EN, "PHONE": EN["PHONE"] + ["Give us a bell on {v}.", "Call the shop on {v} this arvo."]}
DE = {
    "EMAIL": ["Fragen? Schreib uns an {v}.", "Reservierungen gerne per Mail an {v}.", "Kontakt: {v}",
              "Bewerbungen bitte an Frau Huber ({v}).", "Einfach eine kurze Mail an {v} schicken!"],
    "PHONE": ["Ruf uns an unter {v}.", "Tischreservierung: {v}", "Telefonisch erreichbar unter {v} (Mo–Fr).",
              "Tel.: {v}", "Bestellungen per WhatsApp an {v}.", "Servus! Ruf einfach an: {v}",
              "Unsere Hotline {v} ist 24 Stunden erreichbar."],
    "CARD": ["Bezahlt mit Kreditkarte {v}.", "Meine Kartennummer: {v}, gültig bis 08/26.",
             "Bitte die Anzahlung von {v} abbuchen.", "Karte {v} wurde abgelehnt."],
    "IBAN": ["Überweisung bitte an IBAN {v}.", "Bankverbindung: {v}, Sparkasse München.",
             "Die Anzahlung bitte auf {v} überweisen.", "IBAN: {v} (Kontoinhaber: Huber)"],
    "IP": ["Die Kasse hängt im WLAN unter {v}.", "Router-Login unter http://{v}/",
           "Zugriff nur von {v} erlaubt.", "Der Drucker hat die Adresse {v}."],
}
ESES = {
    "EMAIL": ["Escríbenos a {v}.", "Reservas en {v}, ¡os esperamos!", "Para encargos: {v}",
              "Mándanos tu CV a {v} antes del viernes.", "¿Dudas? Escribe a Lucía ({v})."],
    "PHONE": ["Llámanos al {v}.", "Reservas: {v}", "Pide por WhatsApp al {v}, vale?",
              "Teléfono de la tienda: {v}.", "Pregunta por Javi en el {v}.",
              "Llámanos al {v} de 9 a 14 h."],
    "CARD": ["Pagado con la tarjeta {v}.", "Mi número de tarjeta es {v}, caduca el 05/27.",
             "Cárgalo a la tarjeta {v}, porfa.", "Tarjeta: {v}"],
    "IBAN": ["Haz la transferencia al IBAN {v}.", "Cuenta para la señal: {v}.", "Ingresa la reserva en {v}.",
             "IBAN: {v} (titular: Pastelería La Espiga)"],
    "IP": ["El datáfono está en {v}.", "Accesos bloqueados desde {v}.", "Panel del router: http://{v}/",
           "La impresora tiene la IP {v}."],
}
ESMX = {
    **ESES,
    "PHONE": ["Márcanos al {v}.", "Pedidos al {v}, ¡órale!", "Mándanos WhatsApp al {v}.",
              "Informes y reservaciones: {v}", "Llámale a Don Pepe al {v}.",
              "Márcanos al {v} 24 horas, los 365 días del año."],
    "IBAN": ["Para pagos desde España: IBAN {v}.", "Si pagas desde Europa, transfiere a {v}.",
             "Cuenta en euros (IBAN): {v}"],
    "IP": ["La terminal está en {v}.", "Entra al módem en http://{v}/", "La impresora tiene la IP {v}."],
}
TEMPLATES = {"en-GB": ENGB, "en-US": ENUS, "en-AU": ENAU, "de-DE": DE, "es-ES": ESES, "es-MX": ESMX}

# ---------------------------------------------------------------- values

NAMES = ["anna", "ben", "carlos", "lucia", "jürgen", "sophie", "mohammed", "priya", "tom", "maria", "liam",
         "fernanda", "olivia", "kai", "sofia", "jack", "lena", "diego", "chloe", "max"]
SURNAMES = ["smith", "huber", "garcia", "nguyen", "obrien", "müller", "lopez", "jones", "schmidt", "hernandez",
            "walsh", "fernandez", "brown", "weber", "martinez", "taylor", "ramirez", "wilson"]
ROLES = ["info", "hello", "hola", "kontakt", "reservas", "bookings", "pedidos", "service", "team", "contacto",
         "office", "ventas", "orders"]
BUSINESSES = ["cafe-ancoats", "rallyandgrind", "baeckerei-huber", "bäckerei-müller", "panaderia-laespiga",
              "floreria-centenario", "northsidespokes", "kraftwerk-maxvorstadt", "la-riberena", "austin-tacos",
              "bayside-paddle", "atelier12", "sport-giesing", "tacosdonpepe", "brunswick-books"]
DOMAINS = {"GB": ["co.uk", "com", "org.uk", "uk"], "US": ["com", "us", "net", "org"], "AU": ["com.au", "net.au"],
           "DE": ["de", "com", "bayern"], "ES": ["es", "com", "cat"], "MX": ["com.mx", "mx", "com"]}
FREEMAIL = {"GB": ["gmail.com", "outlook.com", "btinternet.com"], "US": ["gmail.com", "yahoo.com", "icloud.com"],
            "AU": ["bigpond.com", "gmail.com", "outlook.com.au"], "DE": ["gmx.de", "web.de", "t-online.de"],
            "ES": ["gmail.com", "hotmail.es", "telefonica.net"], "MX": ["gmail.com", "hotmail.com", "yahoo.com.mx"]}


def make_email(country: str, rng: random.Random) -> str:
    first, last = rng.choice(NAMES), rng.choice(SURNAMES)
    local = rng.choice([
        f"{first}.{last}", f"{first}_{last}", f"{first}{last}", f"{first[0]}{last}", f"{first}{rng.randint(1, 99)}",
        f"{first}.{last}{rng.randint(1960, 2005)}", rng.choice(ROLES), f"{first}+promo", f"{first}-{last}"])
    if rng.random() < 0.6:
        domain = f"{rng.choice(BUSINESSES)}.{rng.choice(DOMAINS[country])}"
        domain = rng.choice([domain, domain, f"mail.{domain}"])
    else:
        domain = rng.choice(FREEMAIL[country])
    value = f"{local}@{domain}"
    return value.capitalize() if rng.random() < 0.08 else value


# National significant number prefixes in real use: area codes and mobile ranges.
PHONE_PREFIXES = {
    "GB": ["20", "161", "121", "113", "117", "131", "141", "151", "114", "1223", "1865", "7700", "7911", "7400",
           "7825", "800", "3"],
    "US": ["512", "212", "415", "312", "617", "303", "206", "713", "305", "737", "800", "888", "404", "702"],
    "AU": ["3", "2", "7", "8", "4", "1300", "1800"],
    "DE": ["89", "30", "40", "221", "69", "711", "911", "8031", "8151", "151", "160", "170", "171", "176", "800"],
    "ES": ["91", "93", "95", "96", "6", "7", "900", "98"],
    "MX": ["55", "33", "81", "222", "998", "442", "800", "664", "999"],
}
IDD = {"GB": "00", "US": "011", "AU": "0011", "DE": "00", "ES": "00", "MX": "00"}  # international call prefix


def make_phone(country: str, rng: random.Random) -> str:
    """A phone number phonenumbers calls valid for ``country``, written the way people there write it."""
    while True:
        prefix = rng.choice(PHONE_PREFIXES[country])
        length = rng.randint(len(prefix) + 4, 11)
        nsn = prefix + "".join(rng.choice(string.digits) for _ in range(length - len(prefix)))
        number = phonenumbers.parse("+" + str(phonenumbers.country_code_for_region(country)) + nsn)
        if phonenumbers.is_valid_number_for_region(number, country):
            break
    text = format_phone(number, country, rng)
    parsed = phonenumbers.parse(text.replace("+52 1 ", "+52 "), country)
    # Only formats that phonenumbers itself reads back as the same number are fair to plant.
    same = parsed.national_number == number.national_number
    return text if same else phonenumbers.format_number(number, Fmt.NATIONAL)


def format_phone(number: phonenumbers.PhoneNumber, country: str, rng: random.Random) -> str:
    national = phonenumbers.format_number(number, Fmt.NATIONAL)
    intl = phonenumbers.format_number(number, Fmt.INTERNATIONAL)
    nsn = str(number.national_number)
    options: list[Callable[[], str]] = [
        lambda: national, lambda: national, lambda: intl, lambda: intl,
        lambda: phonenumbers.format_number(number, Fmt.E164),
        lambda: IDD[country] + intl[1:],
        lambda: national.replace(" ", "-"),
        lambda: re.sub(r"[^\d]", "", national),
        lambda: intl.replace(" ", "-"),
    ]
    if country in ("GB", "DE"):
        head, _, tail = intl.partition(" ")
        options.append(lambda: f"{head} (0){tail}")
    if country == "DE":
        options.append(lambda: national.replace(" ", "/", 1))
        options.append(lambda: national.replace(" ", " / ", 1))
    if country == "US":
        d = nsn
        options += [lambda: f"{d[:3]}.{d[3:6]}.{d[6:]}", lambda: f"{d[:3]}-{d[3:6]}-{d[6:]}",
                    lambda: f"1-{d[:3]}-{d[3:6]}-{d[6:]}", lambda: f"+1 ({d[:3]}) {d[3:6]}-{d[6:]}"]
    if country == "ES" and len(nsn) == 9:
        d = nsn
        options += [lambda: f"{d[:3]} {d[3:5]} {d[5:7]} {d[7:]}", lambda: f"{d[:2]} {d[2:5]} {d[5:7]} {d[7:]}",
                    lambda: f"{d[:3]} {d[3:6]} {d[6:]}", lambda: f"+34 {d[:3]} {d[3:6]} {d[6:]}"]
    if country == "MX" and len(nsn) == 10:
        d, a = nsn, (2 if nsn[:2] in ("55", "33", "81") else 3)
        options += [lambda: f"{d[:a]} {d[a:6]} {d[6:]}", lambda: f"({d[:a]}) {d[a:6]}-{d[6:]}",
                    lambda: f"{d[:a]}-{d[a:6]}-{d[6:]}", lambda: f"+52 ({d[:a]}) {d[a:6]} {d[6:]}",
                    lambda: f"+52 1 {d[:a]} {d[a:6]} {d[6:]}"]  # the pre-2019 mobile "1", still common
    if country == "AU":
        options.append(lambda: national.replace("(", "").replace(")", ""))
    if country == "GB":
        options.append(lambda: "(" + national.replace(" ", ") ", 1))
    return rng.choice(options)()


CARD_BRANDS = [  # (issuer prefixes, lengths, grouping)
    (["4"], [16, 16, 16, 13, 19], None), (["51", "52", "53", "54", "55", "2221", "2500", "2720"], [16], None),
    (["34", "37"], [15], (4, 6, 5)), (["6011", "65"], [16], None), (["3528", "3589"], [16], None),
    (["36", "38"], [14], (4, 6, 4)), (["62"], [16, 19], None), (["5018", "6759", "6304"], [16, 19], None),
]


def make_card(rng: random.Random) -> str:
    prefixes, lengths, grouping = rng.choice(CARD_BRANDS)
    prefix, length = rng.choice(prefixes), rng.choice(lengths)
    body = prefix + "".join(rng.choice(string.digits) for _ in range(length - len(prefix) - 1))
    digits = body + luhn.calc_check_digit(body)
    groups = grouping or tuple([4] * (length // 4) + ([length % 4] if length % 4 else []))
    parts, at = [], 0
    for size in groups:
        parts.append(digits[at:at + size])
        at += size
    return rng.choice([" ", " ", "-", "", "\u00a0"]).join(parts)


def make_iban(country: str, rng: random.Random) -> str:
    def digits(n: int) -> str:
        return "".join(rng.choice(string.digits) for _ in range(n))

    home = {"GB": ["GB", "GB", "IE"], "DE": ["DE", "DE", "AT"], "ES": ["ES"], "MX": ["ES", "DE"],
            "US": ["GB", "DE", "NL", "FR"], "AU": ["GB", "IE", "NL"]}[country]
    cc = rng.choice(home)
    if cc == "ES":
        bank, account = digits(8), digits(10)
        value = ccc.to_iban(bank + ccc.calc_check_digits(bank + "00" + account) + account)
    else:
        bban = {"GB": lambda: rng.choice(["NWBK", "BARC", "LOYD", "HBUK", "MIDL"]) + digits(14),
                "IE": lambda: rng.choice(["AIBK", "BOFI"]) + digits(14), "DE": lambda: digits(18),
                "AT": lambda: digits(16), "NL": lambda: rng.choice(["ABNA", "INGB", "RABO"]) + digits(10),
                "FR": lambda: digits(21)}[cc]()
        if cc == "FR":  # the RIB key makes French numbers verifiable by banks; keep them realistic
            bban += f"{97 - int(bban + '00') % 97:02d}"
        value = cc + iban.calc_check_digits(cc + "00" + bban) + bban
    value = iban.compact(value)
    assert iban.is_valid(value), value
    return iban.format(value) if rng.random() < 0.7 else value


def make_ip(rng: random.Random) -> str:
    v4 = rng.choice([
        f"192.168.{rng.randint(0, 255)}.{rng.randint(1, 254)}", f"10.{rng.randint(0, 255)}.{rng.randint(0, 255)}."
        f"{rng.randint(1, 254)}", f"172.{rng.randint(16, 31)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}",
        str(ipaddress.IPv4Address(rng.randint(0x01000000, 0xDFFFFFFF)))])
    v6_int = (0x2001_0DB8 << 96 if rng.random() < 0.4 else rng.choice([0x2A00, 0x2A02, 0x2600, 0x2804]) << 112) \
        | rng.getrandbits(64 if rng.random() < 0.5 else 16)
    v6 = ipaddress.IPv6Address(v6_int)
    choice = rng.random()
    if choice < 0.5:
        return v4 + (f":{rng.choice([80, 443, 8080])}" if rng.random() < 0.1 else "")
    if choice < 0.7:
        return v6.compressed
    if choice < 0.8:
        return v6.exploded.upper() if rng.random() < 0.5 else v6.exploded
    if choice < 0.9:
        return f"fe80::{rng.getrandbits(16):x}:{rng.getrandbits(16):x}"
    return f"::ffff:{v4}" if rng.random() < 0.5 else f"[{v6.compressed}]:{rng.choice([443, 8443])}"


def ip_value(text: str) -> str:
    """The address inside a planted IP string (ports and brackets stay in the copy)."""
    if text.startswith("["):
        return text[1:text.index("]")]
    return text.rsplit(":", 1)[0] if text.count(":") == 1 else text


# ---------------------------------------------------------------- clean look-alikes (hard negatives)

DECOYS = {
    "en": ["Tickets from £12.50, or $1,299.00 for the VIP table.", "Open 7:30pm till late, 9am–5pm on Sundays.",
           "Sale ends 31/12/2025 — up to 40% off.", "Find us at 52 Thomas St, Manchester M4 1HN.",
           "Follow @CafeAncoats and tag #manchesterfood.", "Menu at https://www.cafe-ancoats.co.uk/menu?week=12.",
           "Austin, TX 78701 · open since 1998.", "Order #10234 ships in 3-5 days.", "2x1 on flat whites till 11am.",
           "Level 3, 120 Collins St, Melbourne VIC 3000.", "A$35 an hour, 4.8 stars from 1,200 reviews.",
           "Doors 19:30, show 20:00 on 14 February 2026.", "Use code 0161 000 00 at the till.",
           "Version 2.4.1 of the app is out.", "Gift card 4111 1111 1111 1112 is a typo.",
           "Our old IBAN GB00 NWBK 6016 1331 9268 19 is closed.", "Temperatures of 41° and 1,000+ fans.",
           "Score: 3-1, 2-2, 104-87.", "Mon–Fri 8:00–18:00, Sat 9:00–13:00."],
    "de": ["Ab 34,90 € pro Person, Maß für 15,80 €.", "Am 12.05.2025 ab 19:30 Uhr im Biergarten.",
           "Leopoldstraße 123, 80802 München.", "Folgt @KraftwerkMaxvorstadt, #wiesn #münchen.",
           "Infos auf www.sport-giesing.de/ski-service.", "Bis zu 30 % Rabatt, nur bis 31.10.",
           "3.000 Besucher, 1.200 Plätze, 20 Jahre Tradition.", "Öffnungszeiten Mo–Fr 9–18 Uhr, Sa 10–14 Uhr.",
           "Bestellnummer 2025-0815-4711 bitte angeben.", "Preisliste 2026 (Stand: 01.01.2026).",
           "Ticket-Nr. 4111 1111 1111 1112 ist ungültig.", "Alte IBAN DE00 3704 0044 0532 0130 00 gilt nicht mehr.",
           "Gutscheincode 0123 45 an der Kasse nennen.", "1.100 m über dem Meer, 5 km vom Tegernsee."],
    "es": ["Desde 12,90 € o $149 MXN el menú.", "El 5 de mayo de 2025 a las 21:00 h.",
           "Calle de Atocha 27, 28012 Madrid.", "Síguenos en @PanaderiaLaEspiga #Malasaña #CDMX.",
           "Reserva en https://panaderia-laespiga.es/encargos?id=2025.", "Hasta 50 % de descuento, 2x1 y 3x2.",
           "Col. Roma Norte, 06700 CDMX, abierto de 8:00 a 22:00.", "$2,499 MXN a 12 meses sin intereses.",
           "Pedido n.º 10234 listo el 14/02/2026.", "Más de 1.500 clientes y 4,9 estrellas.",
           "El número 4111 1111 1111 1112 no es válido.", "IBAN ES00 2100 0418 4502 0005 1332 ya no existe.",
           "Horario: L-V 9:00-14:00 y 17:00-20:30.", "Ganamos 3-1 el 20-11-2025.", "Código 91 123 45 en caja."],
}
LANG = {"en-GB": "en", "en-US": "en", "en-AU": "en", "de-DE": "de", "es-ES": "es", "es-MX": "es"}


# ---------------------------------------------------------------- benchmark


def load_corpus() -> dict[str, tuple[str, list[str]]]:
    """Locale -> (country, completions) for every region folder in the demo data."""
    corpus: dict[str, tuple[str, list[str]]] = {}
    for path in sorted(DEMO_DATA.glob("*/examples.jsonl")):
        locale = path.parent.name[:5]  # folders are named by region code, e.g. en-GB-manchester
        if locale not in LOCALES:
            continue
        rows = []
        for line in path.read_text("utf-8").splitlines():
            try:  # a region folder may still be being written; take the rows that are complete
                rows.append(json.loads(line)["completion"])
            except (ValueError, KeyError, TypeError):
                continue
        corpus.setdefault(locale, (LOCALES[locale], []))[1].extend(rows)
    return corpus


def carriers(corpus: dict[str, tuple[str, list[str]]], locale: str) -> list[str]:
    """The locale's own completions, else those of its language, else all of them."""
    if locale in corpus:
        return corpus[locale][1]
    same = [t for loc, (_, texts) in corpus.items() if loc[:2] == locale[:2] for t in texts]
    return same or [t for _, texts in corpus.values() for t in texts]


def insert_sentence(text: str, sentence: str, rng: random.Random) -> str:
    parts = re.split(r"(?<=[.!?])\s+", text)
    at = rng.randint(0, len(parts))
    return " ".join(parts[:at] + [sentence] + parts[at:])


def plant(kind: str, locale: str, carrier: str, rng: random.Random) -> tuple[str, str, str]:
    """(row, planted value, the row as a perfect scrubber would leave it)."""
    country = LOCALES[locale]
    raw = {"EMAIL": lambda: make_email(country, rng), "PHONE": lambda: make_phone(country, rng),
           "CARD": lambda: make_card(rng), "IBAN": lambda: make_iban(country, rng), "IP": lambda: make_ip(rng)}[kind]()
    sentence = rng.choice(TEMPLATES[locale][kind]).format(v=raw)
    if rng.random() < 0.3:  # clean look-alikes next to the value must survive too
        sentence += ("" if sentence[-1] in ".!?)" else ".") + " " + rng.choice(DECOYS[LANG[locale]])
    value = ip_value(raw) if kind == "IP" else raw
    row = insert_sentence(carrier, sentence, rng)
    return row, value, row.replace(value, f"[{kind}]")


def measure(seed: int = 20240501, per_region: int = 40, show_misses: bool = False) -> dict:
    """Recall and exact share per type, false positives on clean and hard rows, throughput, and whether the
    targets are met (``ok``)."""
    rng = random.Random(seed)
    corpus = load_corpus()
    if not corpus:
        raise SystemExit(f"no demo completions under {DEMO_DATA}")
    clean = [(loc, country, t) for loc, (country, texts) in corpus.items() for t in texts]
    out: dict = {"rows": len(clean), "regions": sorted(corpus), "recall": {}, "exact": {}, "planted": {}}
    for kind in sorted(PII_TYPES):
        hits = exact = planted = 0
        for locale in LOCALES:
            for _ in range(per_region):
                row, value, expected = plant(kind, locale, rng.choice(carriers(corpus, locale)), rng)
                scrubbed, found = scrub(row, LOCALES[locale])
                planted += 1
                hit = value not in scrubbed and f"[{kind}]" in scrubbed and found == {kind: 1}
                hits += hit
                exact += scrubbed == expected and found == {kind: 1}
                if show_misses and scrubbed != expected:
                    print(f"  {'INEXACT' if hit else 'MISS'} {kind} {locale} {value!r}: {scrubbed!r} {dict(found)}")
        out["planted"][kind] = planted
        out["recall"][kind] = 100 * hits / planted
        out["exact"][kind] = 100 * exact / planted

    changed = [t for _, country, t in clean if scrub(t, country)[0] != t]
    hard = []
    for locale, country, text in clean:
        for _ in range(3):
            text = insert_sentence(text, rng.choice(DECOYS[LANG.get(locale, "en")]), rng)
        hard.append((country, text))
    hard_changed = [(t, scrubbed) for t, scrubbed in ((t, scrub(t, c)[0]) for c, t in hard) if scrubbed != t]
    if show_misses:
        for before, after in hard_changed:
            print(f"  FP {before!r}\n  -> {after!r}")
    out["fp_clean"] = 100 * len(changed) / max(len(clean), 1)
    out["fp_hard"] = 100 * len(hard_changed) / max(len(hard), 1)
    out["fp_counts"] = (len(changed), len(clean), len(hard_changed), len(hard))

    rows, start = 0, time.perf_counter()
    while time.perf_counter() - start < 1.0:
        for _, country, text in clean:
            scrub(text, country)
        rows += len(clean)
    out["rows_per_s"] = rows / (time.perf_counter() - start)
    out["ok"] = (all(r >= RECALL_TARGET for r in out["recall"].values())
                 and out["fp_clean"] <= FP_TARGET and out["fp_hard"] <= FP_TARGET)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seed", type=int, default=20240501)
    parser.add_argument("--per-region", type=int, default=40, help="planted values per type and region")
    parser.add_argument("--show-misses", action="store_true")
    args = parser.parse_args()
    m = measure(args.seed, args.per_region, args.show_misses)
    print(f"demo corpus: {m['rows']} completions from {', '.join(m['regions'])}")
    print(f"{'type':<6} {'planted':>8} {'recall %':>9} {'exact %':>8}")
    for kind in sorted(m["recall"]):
        print(f"{kind:<6} {m['planted'][kind]:>8} {m['recall'][kind]:>9.2f} {m['exact'][kind]:>8.2f}")
    changed, clean, hard_changed, hard = m["fp_counts"]
    print(f"false positives, clean demo corpus: {changed}/{clean} = {m['fp_clean']:.2f} %")
    print(f"false positives, hard negatives:    {hard_changed}/{hard} = {m['fp_hard']:.2f} %")
    print(f"throughput: {m['rows_per_s']:,.0f} rows/s (scrub on the demo corpus)")
    print("targets met" if m["ok"] else f"TARGETS MISSED (recall >= {RECALL_TARGET} %, FP <= {FP_TARGET} %)")
    return 0 if m["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
