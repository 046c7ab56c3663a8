"""The embedded toy translation task: a seeded generator of English -> German-like pairs.

It is small enough to write in seconds and hard enough that model capacity matters:
- a lexicon of ~170 nouns with grammatical gender, ~50 adjectives, ~80 verbs;
- case and agreement: articles, possessives and adjective endings follow gender, number
  and case ("a big dog" -> "ein großer Hund", "with the big dogs" -> "mit den großen Hunden");
- word order: verb-second after a fronted adverb or clause ("Today the dog sleeps." ->
  "Heute schläft der Hund."), verb-final subordinate and relative clauses, separable
  verbs split in main clauses ("opens the door" -> "macht die Tür auf"), infinitives and
  participles at the clause end;
- numbers written out ("the 23 dogs" -> "die dreiundzwanzig Hunde");
- sentences of 3-30 source words; longer ones nest clauses, so they need more capacity.

The mapping is deterministic, so a large enough model can reach a high BLEU while a tiny
one cannot: the HAT accuracy/latency trade-off is visible on it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path

from hat.data import toy_lexicon as lex
from hat.fsutil import atomic_write

MIN_WORDS, MAX_WORDS = 3, 30
SOURCE_LANG, TARGET_LANG = "en", "de"

_DEF = {
    ("nom", "m"): "der",
    ("nom", "f"): "die",
    ("nom", "n"): "das",
    ("nom", "pl"): "die",
    ("acc", "m"): "den",
    ("acc", "f"): "die",
    ("acc", "n"): "das",
    ("acc", "pl"): "die",
    ("dat", "m"): "dem",
    ("dat", "f"): "der",
    ("dat", "n"): "dem",
    ("dat", "pl"): "den",
}
_EIN_ENDING = {
    ("nom", "m"): "",
    ("nom", "f"): "e",
    ("nom", "n"): "",
    ("nom", "pl"): "e",
    ("acc", "m"): "en",
    ("acc", "f"): "e",
    ("acc", "n"): "",
    ("acc", "pl"): "e",
    ("dat", "m"): "em",
    ("dat", "f"): "er",
    ("dat", "n"): "em",
    ("dat", "pl"): "en",
}
_WEAK_ADJ = {
    ("nom", "m"): "e",
    ("nom", "f"): "e",
    ("nom", "n"): "e",
    ("acc", "m"): "en",
    ("acc", "f"): "e",
    ("acc", "n"): "e",
}  # everything else: "en"
_MIXED_ADJ = {
    ("nom", "m"): "er",
    ("nom", "f"): "e",
    ("nom", "n"): "es",
    ("acc", "m"): "en",
    ("acc", "f"): "e",
    ("acc", "n"): "es",
}  # everything else: "en"
_SEIN = {"1sg": "bin", "3sg": "ist", "pl": "sind"}
_HABEN = {"1sg": "habe", "3sg": "hat", "pl": "haben"}


def german_number(n: int) -> str:
    """Write 1-999 out in German: 23 -> 'dreiundzwanzig', 101 -> 'hunderteins'."""
    if not 1 <= n <= 999:
        raise ValueError(f"toy numbers are 1-999, got {n}")
    if n >= 100:
        rest = n % 100
        head = ("" if n // 100 == 1 else lex.DE_UNITS[n // 100]) + "hundert"
        return head + ("" if rest == 0 else "eins" if rest == 1 else german_number(rest))
    if n == 1:
        return "eins"
    if n < 10:
        return lex.DE_UNITS[n]
    if n < 20:
        return lex.DE_TEENS[n - 10]
    unit = lex.DE_UNITS[n % 10] + "und" if n % 10 else ""
    return unit + lex.DE_TENS[n // 10]


@dataclass
class NounPhrase:
    noun: lex.Noun | None = None
    pronoun: tuple[str, str, str] | None = None  # (en, de, person)
    det: str = "def"  # def | indef | poss | num | defnum
    plural: bool = False
    possessive: tuple[str, str] | None = None
    number: int | None = None
    adjectives: list[lex.Adjective] = field(default_factory=list)
    relative: Clause | None = None  # subject relative clause: "the dog that sleeps"

    @property
    def person(self) -> str:
        if self.pronoun:
            return self.pronoun[2]
        return "pl" if self.plural else "3sg"

    def english(self) -> list[str]:
        if self.pronoun:
            return [self.pronoun[0]]
        words: list[str] = []
        if self.det in ("def", "defnum"):
            words.append("the")
        elif self.det == "poss":
            words.append(self.possessive[0])
        if self.number is not None:
            words.append(str(self.number))
        words += [a.en for a in self.adjectives]
        words.append(self.noun.en_pl if self.plural else self.noun.en)
        if self.det == "indef":
            words.insert(0, "an" if words[0][0] in "aeiou" else "a")
        if self.relative is not None:
            words += ["that"] + self.relative.english_predicate()
        return words

    def german(self, case: str, negate_indefinite: bool = False) -> list[str]:
        if self.pronoun:
            return [self.pronoun[1]]
        key = (case, "pl" if self.plural else self.noun.gender)
        words: list[str] = []
        if self.det in ("def", "defnum"):
            words.append(_DEF[key])
            adj_ending = _WEAK_ADJ.get(key, "en")
        elif self.det in ("indef", "poss"):
            stem = (
                "kein"
                if negate_indefinite
                else "ein"
                if self.det == "indef"
                else self.possessive[1]
            )
            words.append(stem + _EIN_ENDING[key])
            adj_ending = _MIXED_ADJ.get(key, "en")
        else:  # bare plural with a number: strong endings
            adj_ending = "en" if case == "dat" else "e"
        if self.number is not None:
            words.append(german_number(self.number))
        words += [a.de_stem + adj_ending for a in self.adjectives]
        noun = self.noun.de_pl if self.plural else self.noun.de
        if case == "dat" and self.plural and not noun.endswith(("n", "s")):
            noun += "n"
        words.append(noun)
        if self.relative is not None:
            pronoun = _DEF[("nom", "pl" if self.plural else self.noun.gender)]
            words += [","] + self.relative.german_clause(opener=[pronoun]) + [","]
        return words


@dataclass
class Clause:
    subject: NounPhrase
    kind: str  # trans | intrans | copula | say
    verb: lex.Verb | None = None
    obj: NounPhrase | None = None
    adjective: lex.Adjective | None = None
    complement: Clause | None = None  # the "that" clause of a saying verb
    preps: list[tuple[tuple[str, str, str | None], NounPhrase]] = field(default_factory=list)
    modal: lex.Modal | None = None
    perfect: bool = False
    negated: bool = False
    adverb: tuple[str, str] | None = None
    fronted_adverb: bool = False

    # English -------------------------------------------------------------------
    def english_predicate(self) -> list[str]:
        """The English clause without its subject: '(often) does not see the dog ...'."""
        person = self.subject.person
        third = person == "3sg"
        adverb = [self.adverb[0]] if self.adverb and not self.fronted_adverb else []
        if self.kind == "copula":
            be = {"1sg": "am", "3sg": "is", "pl": "are"}[person]
            group = [be] + adverb + (["not"] if self.negated else []) + [self.adjective.en]
        elif self.modal:
            modal = (
                (self.modal.en_neg_3sg if third else self.modal.en_neg)
                if self.negated
                else (self.modal.en_3sg if third else self.modal.en)
            )
            group = modal.split() + adverb + self.verb.en.split()
        elif self.perfect:
            group = (
                ["has" if third else "have"]
                + (["not"] if self.negated else [])
                + adverb
                + self.verb.en_pp.split()
            )
        elif self.negated:
            group = ["does" if third else "do", "not"] + adverb + self.verb.en.split()
        else:
            group = adverb + (self.verb.en_3sg if third else self.verb.en).split()
        words = group
        if self.obj is not None:
            words += self.obj.english()
        for (prep_en, _, _), np_ in self.preps:
            words += prep_en.split() + np_.english()
        if self.complement is not None:
            words += ["that"] + self.complement.english()
        return words

    def english(self) -> list[str]:
        front = [self.adverb[0]] if self.fronted_adverb else []
        return front + self.subject.english() + self.english_predicate()

    # German --------------------------------------------------------------------
    def _finite(self) -> str:
        person = self.subject.person
        if self.kind == "copula":
            return _SEIN[person]
        if self.modal:
            if self.negated:
                return self.modal.de_neg_pl if person == "pl" else self.modal.de_neg_sg
            return self.modal.de_pl if person == "pl" else self.modal.de_sg
        if self.perfect:
            return (_SEIN if self.verb.aux == "sein" else _HABEN)[person]
        return {"1sg": self.verb.de_1sg, "3sg": self.verb.de_3sg, "pl": self.verb.de_pl}[person]

    def _middle(self) -> list[str]:
        """Objects, prepositional phrases and 'nicht': between the verb brackets."""
        words: list[str] = []
        kein = self.negated and self.obj is not None and self.obj.det == "indef"
        if self.obj is not None:
            words += self.obj.german("acc", negate_indefinite=kein)
        for (_, prep_de, contracted), np_ in self.preps:
            phrase = np_.german("dat")
            if contracted and phrase[0] == "dem":
                words += [contracted] + phrase[1:]
            else:
                words += [prep_de] + phrase
        if self.negated and not kein:
            words.append("nicht")
        if self.kind == "copula":
            words.append(self.adjective.de)
        return words

    def _right_bracket(self) -> list[str]:
        if self.kind == "copula":
            return []
        if self.modal:
            return [self.verb.de_inf]
        if self.perfect:
            return [self.verb.de_pp]
        return [self.verb.prefix] if self.verb.prefix else []

    def _complement(self) -> list[str]:
        if self.complement is None:
            return []
        return [",", "dass"] + self.complement.german_clause(opener=None)

    def german_main(self, verb_first: bool = False) -> list[str]:
        """Verb-second main clause; `verb_first` after a fronted subordinate clause."""
        adverb = [self.adverb[1]] if self.adverb else []
        subject = self.subject.german("nom")
        if self.fronted_adverb:
            head = adverb + [self._finite()] + subject
        elif verb_first:
            head = [self._finite()] + subject + adverb
        else:
            head = subject + [self._finite()] + adverb
        return head + self._middle() + self._right_bracket() + self._complement()

    def german_clause(self, opener: list[str] | None) -> list[str]:
        """Verb-final clause ('dass der Hund schläft'); `opener` replaces the subject (relative)."""
        subject = opener if opener is not None else self.subject.german("nom")
        adverb = [self.adverb[1]] if self.adverb else []
        finite = self._finite()
        if self.kind != "copula" and not self.modal and not self.perfect:
            cluster = [self.verb.prefix + finite]
        else:
            cluster = self._right_bracket() + [finite]
        return subject + adverb + self._middle() + cluster + self._complement()


class ToyGrammar:
    """Samples random sentence structures; `pair()` renders one (English, German) pair."""

    def __init__(self, rng: random.Random):
        self.rng = rng

    def _chance(self, p: float) -> bool:
        return self.rng.random() < p

    def number(self) -> int:
        r = self.rng.random()
        if r < 0.5:
            return self.rng.randint(2, 12)
        if r < 0.85:
            return self.rng.randint(13, 99)
        return self.rng.randint(100, 999)

    def noun_phrase(
        self, nouns: list[lex.Noun], depth: int, allow_relative: bool = True
    ) -> NounPhrase:
        rng = self.rng
        det = rng.choices(["def", "indef", "poss", "num", "defnum"], [0.4, 0.2, 0.15, 0.15, 0.1])[0]
        np_ = NounPhrase(noun=rng.choice(nouns), det=det)
        np_.plural = det in ("num", "defnum") or (det in ("def", "poss") and self._chance(0.3))
        if det == "poss":
            np_.possessive = rng.choice(lex.POSSESSIVES)
        if det in ("num", "defnum"):
            np_.number = self.number()
        n_adj = rng.choices([0, 1, 2], [0.6, 0.3, 0.1])[0]
        np_.adjectives = rng.sample(lex.ADJECTIVES, n_adj)
        if allow_relative and depth > 0 and np_.noun.animate and self._chance(0.12):
            np_.relative = self.clause(depth - 1, subject=np_, relative=True)
        return np_

    def subject(self, depth: int) -> NounPhrase:
        if self._chance(0.2):
            return NounPhrase(pronoun=self.rng.choice(lex.PRONOUNS))
        return self.noun_phrase(lex.ANIMATE_NOUNS, depth)

    def clause(
        self,
        depth: int,
        subject: NounPhrase | None = None,
        relative: bool = False,
        main: bool = False,
    ) -> Clause:
        rng = self.rng
        kinds, weights = ["trans", "intrans", "copula", "say"], [0.5, 0.25, 0.1, 0.15]
        if relative or depth == 0:
            kinds, weights = kinds[:3], weights[:3]
        kind = rng.choices(kinds, weights)[0]
        if relative:  # the relative clause shares its subject with the head noun
            subject = NounPhrase(noun=subject.noun, plural=subject.plural, det="def")
        c = Clause(subject=subject or self.subject(depth), kind=kind)
        if kind == "copula":
            c.adjective = rng.choice(lex.ADJECTIVES)
        else:
            c.verb = rng.choice(
                {
                    "trans": lex.TRANSITIVE_VERBS,
                    "intrans": lex.INTRANSITIVE_VERBS,
                    "say": lex.SAYING_VERBS,
                }[kind]
            )
        if kind == "trans":
            c.obj = self.noun_phrase(
                lex.ANIMATE_NOUNS + lex.THING_NOUNS, depth - 1, allow_relative=not relative
            )
        if kind == "say":
            c.complement = self.clause(depth - 1)
        if kind in ("trans", "intrans") and not relative:
            for _ in range(rng.choices([0, 1, 2], [0.6, 0.3, 0.1])[0]):
                c.preps.append(
                    (
                        rng.choice(lex.PREPOSITIONS),
                        self.noun_phrase(lex.PLACE_NOUNS, 0, allow_relative=False),
                    )
                )
        if kind != "copula" and not relative:
            r = rng.random()
            c.modal = rng.choice(lex.MODALS) if r < 0.2 else None
            c.perfect = 0.2 <= r < 0.4
        c.negated = (
            not relative and self._chance(0.15) and not (c.obj and c.obj.det in ("num", "defnum"))
        )
        if not relative and self._chance(0.2):
            c.adverb = rng.choice(lex.ADVERBS)
            c.fronted_adverb = main and self._chance(0.5)
        return c

    def pair(self) -> tuple[str, str]:
        """One sentence pair with 3-30 source words."""
        while True:
            depth = self.rng.choice([0, 1, 1, 2, 2, 3])
            en, de = self._sentence(depth)
            if MIN_WORDS <= len([w for w in en if w not in ",."]) <= MAX_WORDS:
                return _detokenize(en), _detokenize(de)

    def _sentence(self, depth: int) -> tuple[list[str], list[str]]:
        shape = self.rng.choices(["single", "main+sub", "sub+main", "and"], [0.5, 0.2, 0.15, 0.15])[
            0
        ]
        if shape == "single" or depth == 0:
            c = self.clause(depth, main=True)
            return c.english() + ["."], c.german_main() + ["."]
        first = self.clause(depth - 1, main=shape != "sub+main")
        second = self.clause(depth - 1, main=shape == "and")
        if shape == "and":
            return (
                first.english() + ["and"] + second.english() + ["."],
                first.german_main() + ["und"] + second.german_main() + ["."],
            )
        conj_en, conj_de = self.rng.choice(lex.SUBORDINATORS)
        if shape == "main+sub":
            return (
                first.english() + [conj_en] + second.english() + ["."],
                first.german_main() + [",", conj_de] + second.german_clause(None) + ["."],
            )
        return (
            [conj_en] + second.english() + [","] + first.english() + ["."],
            [conj_de]
            + second.german_clause(None)
            + [","]
            + first.german_main(verb_first=True)
            + ["."],
        )


def _detokenize(words: list[str]) -> str:
    out: list[str] = []
    for w in words:
        if w in ",.":
            while out and out[-1] == ",":  # ", ," and ", ." collapse
                out.pop()
            out.append(w)
        else:
            out.append(w)
    text = ""
    for w in out:
        text += w if (w in ",." or not text) else " " + w
    return text[0].upper() + text[1:]


def generate_pairs(n: int, seed: int, exclude: set[str] | None = None) -> list[tuple[str, str]]:
    """`n` distinct pairs from `seed`; sources in `exclude` (other splits) are skipped."""
    grammar = ToyGrammar(random.Random(seed))
    seen = set(exclude or ())
    pairs: list[tuple[str, str]] = []
    while len(pairs) < n:
        en, de = grammar.pair()
        if en not in seen:
            seen.add(en)
            pairs.append((en, de))
    return pairs


def write_toy_task(
    out_dir: str | Path, train: int = 50_000, valid: int = 1_000, test: int = 1_000, seed: int = 1
) -> dict[str, int]:
    """Write {train,valid,test}.{en,de} under `out_dir`; splits share no source sentence."""
    out = Path(out_dir)
    sizes = {"test": test, "valid": valid, "train": train}
    used: set[str] = set()
    for offset, (split, n) in enumerate(sizes.items()):
        pairs = generate_pairs(n, seed * 1000 + offset, exclude=used)
        used.update(en for en, _ in pairs)
        for lang, column in ((SOURCE_LANG, 0), (TARGET_LANG, 1)):
            with atomic_write(out / f"{split}.{lang}") as f:
                f.writelines(p[column] + "\n" for p in pairs)
    return sizes
