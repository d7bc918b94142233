"""Tests for scripts/make_toy_corpus.py (the toy English->German corpus generator)."""

from __future__ import annotations

import importlib.util
import random
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "make_toy_corpus.py"
DATA = ROOT / "data" / "toy-en-de"
FILES = [f"{split}.{lang}" for split in ("train", "valid", "test") for lang in ("en", "de")]


def _load():
    spec = importlib.util.spec_from_file_location("make_toy_corpus", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


tc = _load()
N, P, PP, cl = tc.noun_np, tc.pron_np, tc.PP, tc.make_clause


def decl(*args, front=None, **kw):
    return tc.declarative(cl(*args, **kw), front)


def _lines(name):
    return (DATA / name).read_text(encoding="utf-8").split("\n")[:-1]


# --------------------------------------------------------------------------
# determinism, uniqueness, committed data
# --------------------------------------------------------------------------


def test_same_seed_gives_same_pairs_and_other_seed_differs():
    a = tc.generate_pairs(1500, seed=7)
    b = tc.generate_pairs(1500, seed=7)
    c = tc.generate_pairs(1500, seed=8)
    assert a == b
    assert a != c
    assert len({en for en, _ in a} & {en for en, _ in c}) < 1000


def test_generate_pairs_returns_n_pairs_with_unique_english():
    pairs = tc.generate_pairs(3000, seed=3)
    assert len(pairs) == 3000
    assert len({en for en, _ in pairs}) == 3000


def test_every_english_sentence_gets_exactly_one_german_translation():
    rng = random.Random(11)
    seen = {}
    for _ in range(25000):
        en, de = tc.random_pair(rng)
        assert seen.setdefault(en, de) == de, en


def test_committed_files_equal_generator_output_for_default_arguments(tmp_path):
    assert tc.main(["--out", str(tmp_path)]) == 0
    for name in FILES:
        assert (tmp_path / name).read_bytes() == (DATA / name).read_bytes(), name


def test_committed_splits_have_expected_sizes_and_no_blank_lines():
    sizes = {"train": 30000, "valid": 1000, "test": 1000}
    for name in FILES:
        raw = (DATA / name).read_bytes()
        assert b"\r" not in raw and raw.endswith(b"\n")
        lines = _lines(name)
        assert len(lines) == sizes[name.split(".")[0]]
        assert all(line.strip() == line and line for line in lines)


def test_valid_and_test_english_never_occur_in_train_and_test_not_in_valid():
    train, valid, test = (set(_lines(f"{s}.en")) for s in ("train", "valid", "test"))
    assert len(train) == 30000 and len(valid) == 1000 and len(test) == 1000
    assert not valid & train
    assert not test & train
    assert not test & valid


def test_sentence_lengths_and_punctuation_are_well_formed():
    en, de = _lines("train.en"), _lines("train.de")
    lengths = [len(s.split()) for s in en]
    assert min(lengths) >= 3 and max(lengths) <= 22
    assert 7 <= sum(lengths) / len(lengths) <= 11
    for s in en + de:
        assert s[0].isupper() and s[-1] in ".?", s
        assert "  " not in s and " ," not in s and " ." not in s, s


def test_german_always_uses_contractions_and_english_never_uses_its():
    de = "\n".join(_lines("train.de"))
    assert not re.search(r"\b(zu dem|zu der|in dem|in das|von dem|bei dem|an dem)\b", de, re.I)
    for word in ("zum", "zur", "im", "ins", "vom", "beim", "am"):
        assert len(re.findall(rf"\b{word}\b", de, re.I)) >= 100, word
    assert not re.search(r"\bits\b", "\n".join(_lines("train.en")))


# --------------------------------------------------------------------------
# hand-checked grammar
# --------------------------------------------------------------------------


def test_accusative_masculine_article_and_weak_noun():
    assert decl(N("man"), "see", obj=N("dog")) == (
        "The man sees the dog.",
        "Der Mann sieht den Hund.",
    )
    assert decl(N("woman"), "see", obj=N("boy")) == (
        "The woman sees the boy.",
        "Die Frau sieht den Jungen.",
    )
    assert decl(N("woman"), "help", obj=N("gentleman")) == (
        "The woman helps the gentleman.",
        "Die Frau hilft dem Herrn.",
    )


@pytest.mark.parametrize(
    ("noun", "expected"),
    [("child", "mit den Kindern"), ("car", "mit den Autos"), ("girl", "mit den Mädchen")],
)
def test_dative_plural_adds_n_unless_plural_ends_in_n_or_s(noun, expected):
    en, de = decl(N("woman"), "play", pp=PP("with", N(noun, num="pl")))
    assert de == f"Die Frau spielt {expected}."
    assert en.startswith("The woman plays with the ")


def test_adjective_endings_weak_mixed_and_strong():
    assert decl(N("man", adjs=["old"]), "see", obj=N("dog", "a", adjs=["big"])) == (
        "The old man sees a big dog.",
        "Der alte Mann sieht einen großen Hund.",
    )
    assert decl(N("child", "a", adjs=["small"]), "sleep")[1] == "Ein kleines Kind schläft."
    assert decl(N("dog", "none", "pl", adjs=["big"]), "sleep") == (
        "Big dogs sleep.",
        "Große Hunde schlafen.",
    )
    assert decl(N("man"), "play", pp=PP("with", N("dog", "none", "pl", adjs=["big"])))[1] == (
        "Der Mann spielt mit großen Hunden."
    )
    assert decl(N("man"), "drink", obj=N("coffee", "none", adjs=["hot"]))[1] == (
        "Der Mann trinkt heißen Kaffee."
    )
    cold_water = PP("with", N("water", "none", adjs=["cold"]))
    assert decl(N("woman"), "wash", obj=N("dog"), pp=cold_water)[1] == (
        "Die Frau wäscht den Hund mit kaltem Wasser."
    )
    assert decl(N("woman"), "see", obj=N("house", "our", adjs=["expensive"]))[1] == (
        "Die Frau sieht unser teures Haus."
    )
    assert decl(N("man", "a", adjs=["old"]), "sleep")[0] == "An old man sleeps."


def test_verb_second_after_fronted_adverbial():
    assert decl(N("man"), "see", obj=N("dog"), front=("today", "heute")) == (
        "Today the man sees the dog.",
        "Heute sieht der Mann den Hund.",
    )
    # unstressed object pronoun precedes a noun subject in the middle field
    assert decl(N("man"), "see", obj=P("he"), front=("today", "heute"))[1] == (
        "Heute sieht ihn der Mann."
    )


def test_verb_final_in_dass_weil_and_wenn_clauses_with_comma():
    sub = cl(N("man"), "see", obj=N("dog"))
    assert tc.that_clause(P("I"), "know", sub) == (
        "I know that the man sees the dog.",
        "Ich weiß, dass der Mann den Hund sieht.",
    )
    main = cl(N("child"), "sleep")
    assert tc.subordinate(main, "because", cl(P("it"), "be", adj=tc.ADJS["tired"])) == (
        "The child sleeps because it is tired.",
        "Das Kind schläft, weil es müde ist.",
    )
    happy = cl(N("child"), "be", adj=tc.ADJS["happy"])
    assert tc.subordinate(happy, "if", cl(N("dog"), "play"), sub_first=True) == (
        "If the dog plays, the child is happy.",
        "Wenn der Hund spielt, ist das Kind glücklich.",
    )
    modal_sub = cl(N("man"), "see", obj=N("dog"), modal="can", neg=True)
    assert tc.subordinate(main, "when", modal_sub)[1] == (
        "Das Kind schläft, wenn der Mann den Hund nicht sehen kann."
    )


@pytest.mark.parametrize(
    ("verb", "prep", "noun", "det", "en", "de"),
    [
        ("go", "to", "station", "the", "goes to the station", "geht zum Bahnhof"),
        ("go", "to", "school", "the", "goes to the school", "geht zur Schule"),
        ("go", "to", "station", "a", "goes to a station", "geht zu einem Bahnhof"),
        ("go", "into", "house", "the", "goes into the house", "geht ins Haus"),
        ("go", "into", "city", "the", "goes into the city", "geht in die Stadt"),
        ("come", "from", "station", "the", "comes from the station", "kommt vom Bahnhof"),
        ("come", "out of", "house", "the", "comes out of the house", "kommt aus dem Haus"),
        ("run", "through", "park", "the", "runs through the park", "läuft durch den Park"),
        ("run", "around", "house", "the", "runs around the house", "läuft um das Haus"),
        ("jump", "onto", "table", "the", "jumps onto the table", "springt auf den Tisch"),
    ],
)
def test_direction_prepositions_cases_and_contractions(verb, prep, noun, det, en, de):
    out = decl(N("man"), verb, pp=PP(prep, N(noun, det)))
    assert out == (f"The man {en}.", f"Der Mann {de}.")


def test_location_prepositions_take_dative_and_contract():
    assert decl(N("dog"), "sleep", pp=PP("in", N("house")))[1] == "Der Hund schläft im Haus."
    assert decl(N("dog"), "sleep", pp=PP("at", N("station")))[1] == "Der Hund schläft am Bahnhof."
    assert decl(N("dog"), "sleep", pp=PP("on", N("table")))[1] == "Der Hund schläft auf dem Tisch."
    assert decl(N("man"), "live", pp=PP("with:bei", N("doctor"))) == (
        "The man lives with the doctor.",
        "Der Mann wohnt beim Arzt.",
    )
    assert decl(N("man"), "go", pp=tc.HOME_DIR)[1] == "Der Mann geht nach Hause."
    assert decl(N("man"), "go", pp=tc.city_pp("to", ("Vienna", "Wien")))[1] == (
        "Der Mann geht nach Wien."
    )


def test_accusative_prepositions_fuer_ohne():
    assert decl(N("man"), "buy", obj=N("ball", "a"), pp=PP("for", N("child"))) == (
        "The man buys a ball for the child.",
        "Der Mann kauft einen Ball für das Kind.",
    )
    assert decl(N("man"), "go", pp=PP("without", N("dog")))[1] == "Der Mann geht ohne den Hund."


def test_kein_negation_for_indefinite_bare_and_mass_objects():
    assert decl(N("man"), "see", obj=N("dog", "a"), neg=True) == (
        "The man does not see a dog.",
        "Der Mann sieht keinen Hund.",
    )
    assert decl(N("man"), "see", obj=N("dog", "none", "pl"), neg=True)[1] == (
        "Der Mann sieht keine Hunde."
    )
    assert decl(N("man"), "drink", obj=N("water", "none"), neg=True) == (
        "The man does not drink water.",
        "Der Mann trinkt kein Wasser.",
    )
    assert decl(N("child"), "be afraid of", obj=N("dog"), neg=True) == (
        "The child is not afraid of the dog.",
        "Das Kind hat keine Angst vor dem Hund.",
    )


def test_nicht_negation_placement():
    assert decl(N("man"), "see", obj=N("dog"), neg=True) == (
        "The man does not see the dog.",
        "Der Mann sieht den Hund nicht.",
    )
    assert decl(N("man"), "live", pp=PP("in", N("city")), neg=True) == (
        "The man does not live in the city.",
        "Der Mann wohnt nicht in der Stadt.",
    )
    assert decl(N("dog"), "be", adj=tc.ADJS["big"], neg=True)[1] == "Der Hund ist nicht groß."
    assert decl(N("man"), "see", obj=N("dog"), neg=True, modal="can") == (
        "The man cannot see the dog.",
        "Der Mann kann den Hund nicht sehen.",
    )


def test_yes_no_and_wh_questions_invert_subject_and_verb():
    assert tc.question(cl(N("man"), "see", obj=N("dog"))) == (
        "Does the man see the dog?",
        "Sieht der Mann den Hund?",
    )
    assert tc.question(cl(P("you all"), "see", obj=N("dog")))[1] == "Seht ihr den Hund?"
    assert tc.question(cl(N("dog"), "be", adj=tc.ADJS["big"])) == (
        "Is the dog big?",
        "Ist der Hund groß?",
    )
    assert tc.question(cl(N("man"), "look forward to", obj=N("party")))[1] == (
        "Freut sich der Mann auf die Party?"
    )
    assert tc.question(cl(N("man"), "sleep"), "where") == (
        "Where does the man sleep?",
        "Wo schläft der Mann?",
    )
    assert tc.question(cl(N("man"), "eat", what=True), "what") == (
        "What does the man eat?",
        "Was isst der Mann?",
    )
    assert tc.question(cl(tc.WHO, "help", obj=N("child")), "who") == (
        "Who helps the child?",
        "Wer hilft dem Kind?",
    )


@pytest.mark.parametrize(
    ("subj", "verb", "kw", "en", "de"),
    [
        ("she", "see", {"obj": ("dog",)}, "She sees the dog.", "Sie sieht den Hund."),
        ("you", "see", {"obj": ("dog",)}, "You see the dog.", "Du siehst den Hund."),
        (
            "he",
            "drive",
            {"pp": ("to", "station")},
            "He drives to the station.",
            "Er fährt zum Bahnhof.",
        ),
        ("he", "eat", {"obj": ("apple", "an")}, "He eats an apple.", "Er isst einen Apfel."),
        ("you", "read", {"obj": ("book", "a")}, "You read a book.", "Du liest ein Buch."),
        ("he", "take", {"obj": ("key",)}, "He takes the key.", "Er nimmt den Schlüssel."),
        ("she", "carry", {"obj": ("bag",)}, "She carries the bag.", "Sie trägt die Tasche."),
        ("he", "run", {}, "He runs.", "Er läuft."),
        ("you", "hold", {"obj": ("ball",)}, "You hold the ball.", "Du hältst den Ball."),
        ("he", "wash", {"obj": ("car",)}, "He washes the car.", "Er wäscht das Auto."),
    ],
)
def test_irregular_present_stems(subj, verb, kw, en, de):
    args = {}
    if "obj" in kw:
        noun, *det = kw["obj"]
        args["obj"] = N(noun, {"an": "a"}.get(det[0], det[0]) if det else "the")
    if "pp" in kw:
        args["pp"] = PP(kw["pp"][0], N(kw["pp"][1]))
    assert decl(P(subj), verb, **args) == (en, de)


def test_ditransitive_dative_before_accusative_in_both_english_forms():
    expected = "Die Frau gibt dem Kind einen Apfel."
    assert decl(N("woman"), "give", dat=N("child"), obj=N("apple", "a")) == (
        "The woman gives the child an apple.",
        expected,
    )
    assert decl(N("woman"), "give", dat=N("child"), obj=N("apple", "a"), to_form=True) == (
        "The woman gives an apple to the child.",
        expected,
    )


def test_coordination_commas():
    a, b = cl(N("man"), "sleep"), cl(N("woman"), "read")
    assert tc.coordinate(a, "but", b) == (
        "The man sleeps, but the woman reads.",
        "Der Mann schläft, aber die Frau liest.",
    )
    assert tc.coordinate(a, "and", b)[1] == "Der Mann schläft und die Frau liest."


def test_conjugation_tables():
    assert tc.conjugate("arbeiten") == (
        "arbeite",
        "arbeitest",
        "arbeitet",
        "arbeiten",
        "arbeitet",
        "arbeiten",
    )
    assert tc.conjugate("lächeln")[:3] == ("lächle", "lächelst", "lächelt")
    assert tc.conjugate("wandern")[0] == "wandere"
    assert tc.conjugate("lesen", "lies")[1:3] == ("liest", "liest")
    assert tc.conjugate("halten", "hält")[1:5] == ("hältst", "hält", "halten", "haltet")
    assert tc.conjugate("öffnen")[2] == "öffnet"


def test_pronoun_safety_rule_rejects_gender_dependent_pronouns():
    ctx = tc.Ctx()
    ctx.track(N("girl"))
    ctx.track(N("dog", "her"))
    assert not ctx.ok(False)  # "The girl sees her dog": German would need "seinen"
    ctx = tc.Ctx()
    ctx.track(tc.name_np("Anna"))
    ctx.track(N("dog", "her"))
    assert ctx.ok(False)
    ctx = tc.Ctx()
    ctx.track(N("cat"))
    ctx.track(P("he"))
    assert ctx.ok(False) and not ctx.ok(True)
