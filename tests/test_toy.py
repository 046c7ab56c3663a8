"""The embedded toy task: determinism, shape of the data, and the grammar's rules."""

import random
import re

from conftest import run_cli

from hat.data import toy_lexicon as lex
from hat.data.toy import (
    MAX_WORDS,
    MIN_WORDS,
    Clause,
    NounPhrase,
    ToyGrammar,
    generate_pairs,
    german_number,
    write_toy_task,
)


def noun(en: str) -> lex.Noun:
    return next(n for n in lex.ANIMATE_NOUNS + lex.THING_NOUNS if n.en == en)


def verb(en: str) -> lex.Verb:
    return next(
        v for v in lex.TRANSITIVE_VERBS + lex.INTRANSITIVE_VERBS + lex.SAYING_VERBS if v.en == en
    )


def adj(en: str) -> lex.Adjective:
    return next(a for a in lex.ADJECTIVES if a.en == en)


def test_same_seed_same_corpus_other_seed_other_corpus():
    assert generate_pairs(300, seed=5) == generate_pairs(300, seed=5)
    assert generate_pairs(300, seed=5) != generate_pairs(300, seed=6)


def test_lengths_and_distinct_sources():
    pairs = generate_pairs(3000, seed=1)
    lengths = [len(re.findall(r"[\w']+", en)) for en, _ in pairs]
    assert min(lengths) >= MIN_WORDS and max(lengths) <= MAX_WORDS
    assert max(lengths) >= 25 and min(lengths) <= 4  # the whole range is covered
    assert len({en for en, _ in pairs}) == len(pairs)
    assert all(
        (en[0].isupper() or en[0].isdigit())
        and de[0].isupper()
        and en.endswith(".")
        and de.endswith(".")
        for en, de in pairs
    )


def test_written_splits_are_disjoint(tmp_path):
    sizes = write_toy_task(tmp_path, train=2000, valid=300, test=300, seed=3)
    assert sizes == {"test": 300, "valid": 300, "train": 2000}
    src = {s: (tmp_path / f"{s}.en").read_text().splitlines() for s in sizes}
    tgt = {s: (tmp_path / f"{s}.de").read_text().splitlines() for s in sizes}
    assert {s: len(v) for s, v in src.items()} == sizes == {s: len(v) for s, v in tgt.items()}
    assert not set(src["train"]) & set(src["valid"])
    assert not set(src["train"]) & set(src["test"])
    assert not set(src["valid"]) & set(src["test"])


def test_german_numbers():
    assert [
        german_number(n) for n in (2, 11, 16, 17, 21, 30, 46, 100, 101, 116, 171, 200, 999)
    ] == [
        "zwei",
        "elf",
        "sechzehn",
        "siebzehn",
        "einundzwanzig",
        "dreißig",
        "sechsundvierzig",
        "hundert",
        "hunderteins",
        "hundertsechzehn",
        "hunderteinundsiebzig",
        "zweihundert",
        "neunhundertneunundneunzig",
    ]


def test_agreement_of_articles_and_adjectives():
    big_dog = NounPhrase(noun=noun("dog"), det="indef", adjectives=[adj("big")])
    assert big_dog.english() == ["a", "big", "dog"]
    assert big_dog.german("nom") == ["ein", "großer", "Hund"]
    assert big_dog.german("acc") == ["einen", "großen", "Hund"]
    assert big_dog.german("acc", negate_indefinite=True) == ["keinen", "großen", "Hund"]
    the_dogs = NounPhrase(noun=noun("dog"), det="def", plural=True, adjectives=[adj("big")])
    assert the_dogs.german("dat") == ["den", "großen", "Hunden"]
    old_apple = NounPhrase(noun=noun("apple"), det="indef", adjectives=[adj("old")])
    assert old_apple.english()[0] == "an"
    assert NounPhrase(noun=noun("house"), det="def", adjectives=[adj("tired")]).german("nom") == [
        "das",
        "müde",
        "Haus",
    ]
    seven = NounPhrase(
        noun=noun("cat"), det="num", plural=True, number=7, adjectives=[adj("small")]
    )
    assert seven.english() == ["7", "small", "cats"]
    assert seven.german("nom") == ["sieben", "kleine", "Katzen"]
    assert seven.german("dat") == ["sieben", "kleinen", "Katzen"]


def test_word_order_rules():
    man = NounPhrase(noun=noun("man"), det="def")
    door = NounPhrase(noun=noun("door"), det="def")
    opens = Clause(subject=man, kind="trans", verb=verb("open"), obj=door)
    assert opens.german_main() == ["der", "Mann", "macht", "die", "Tür", "auf"]  # separable verb
    assert opens.german_clause(None) == ["der", "Mann", "die", "Tür", "aufmacht"]  # verb-final
    opens.adverb, opens.fronted_adverb = ("today", "heute"), True
    assert opens.english()[:3] == ["today", "the", "man"]
    assert opens.german_main()[:3] == ["heute", "macht", "der"]  # verb second
    modal = Clause(subject=man, kind="trans", verb=verb("see"), obj=door, modal=lex.MODALS[0])
    assert modal.german_main() == ["der", "Mann", "kann", "die", "Tür", "sehen"]
    assert modal.german_clause(None)[-2:] == ["sehen", "kann"]
    ran = Clause(subject=man, kind="intrans", verb=verb("run"), perfect=True)
    assert ran.english() == ["the", "man", "has", "run"]
    assert ran.german_main() == ["der", "Mann", "ist", "gelaufen"]  # "sein" perfect
    says = Clause(subject=man, kind="say", verb=verb("say"), complement=opens)
    opens.fronted_adverb = False
    assert says.german_main()[:5] == ["der", "Mann", "sagt", ",", "dass"]
    assert says.german_main()[-1] == "aufmacht"


def test_grammar_pairs_are_deterministic_per_rng():
    a = [ToyGrammar(random.Random(11)).pair() for _ in range(3)]
    b = [ToyGrammar(random.Random(11)).pair() for _ in range(3)]
    assert a == b


def test_cli_writes_task(tmp_path):
    out = tmp_path / "raw"
    result = run_cli(
        "toy", "--out", str(out), "--train-size", "500", "--valid-size", "50", "--test-size", "50"
    )
    assert result.returncode == 0, result.stderr
    assert "train 500" in result.stdout
    assert len((out / "train.de").read_text().splitlines()) == 500
