#!/usr/bin/env python3
"""Deterministic toy English->German parallel corpus generator.

Generates sentence pairs from a small hand-written grammar with correct German
morphology and word order.  Standard library only (Python 3.11).

Usage::

    python3 scripts/make_toy_corpus.py [--out data/toy-en-de] [--seed 1234]
                                        [--train 30000] [--valid 1000] [--test 1000]

writes ``train.en train.de valid.en valid.de test.en test.de`` (UTF-8, one
sentence per line, ``\\n`` line endings) into the output directory.  The same
seed and sizes always give byte-identical files.  ``generate_pairs(n, seed)``
returns ``n`` pairs with unique English sides (it is also importable by path);
``random_pair(rng)`` produces one random pair from a ``random.Random``.
Splits: the first ``--train`` unique pairs go to train, the next ``--valid`` to
valid, the rest to test, so no English sentence is shared between splits.

Design rule: every English sentence has exactly ONE German translation, which
is a deterministic function of the English words ("you" = du, "you all" = ihr,
never Sie; one German lemma per English word; "in" = in+dative, "into" =
in+accusative, "on" = auf+dative, "onto" = auf+accusative, "to" = zu (nach
for cities and "home"), "from" = von (aus for cities), ...).  generate_pairs
raises if one English sentence is ever produced with two German outputs.

Grammar coverage (lexicon: 202 nouns with gender/plural, 102 verb lemmas in
119 verb frames, 62 adjectives, 7 manner adverbs, 12 names, 20
cities/countries, 35 fronted adverbials):

* Noun phrases: der/die/das, ein/eine, kein, possessives mein/dein/sein/ihr/
  unser in nominative, accusative and dative; plurals incl. the dative-plural
  -n rule (den Kindern, but den Autos / den Mädchen); weak masculine nouns
  (den Jungen, dem Löwen, den Herrn); mass nouns (Wasser, Milch, ...);
  adjective endings weak (after der), mixed (after ein/kein/possessives) and
  strong (no article: große Hunde, mit kaltem Wasser); up to two adjectives.
* Pronouns I/you/he/she/it/we/you all/they (ich/du/er/sie/es/wir/ihr/sie) in
  nominative, accusative (mich, dich, ihn, ...) and dative (mir, dir, ihm, ...).
* Present tense conjugation incl. stem changes (sieht, fährt, gibt, isst,
  liest, nimmt, hilft, trägt, läuft, schläft, hält, wäscht, spricht, trifft,
  wirft, stiehlt, vergisst, fängt, fällt), e-insertion (arbeitet, öffnet),
  -eln/-ern verbs (lächle, wandere), sein/haben/wissen/mögen, modal verbs
  können/wollen/müssen with the infinitive at the end.
* Verb frames: intransitive (+ location / direction / manner adverb /
  mit-ohne-gegen-bei phrase), accusative object (+ location, für-phrase,
  instrument or direction), dative object (helfen, danken, folgen, gehören,
  antworten, vertrauen, winken, gratulieren), ditransitive dative+accusative
  (geben, zeigen, bringen, schicken, kaufen, verkaufen, schreiben, erzählen,
  werfen, leihen, kochen; English "gives the child a ball" and "gives a ball
  to the child"), prepositional objects (warten auf, sprechen über/mit,
  bitten um, kämpfen gegen, träumen von, lachen über, hoffen auf), reflexive
  sich freuen auf, Angst haben vor, copula + adjective, copula + location.
* Prepositions: dative (mit, von, zu, bei, aus, nach), accusative (für, ohne,
  durch, gegen, um), two-way (in, an, auf, unter, hinter, vor, neben, über)
  with contractions zum/zur/im/ins/vom/beim/am (always used with the plain
  definite article; auf das, um das, über das etc. stay uncontracted).
* Word order: verb-second main clauses, also after a fronted time/sentence
  adverbial (Heute sieht der Mann den Hund.); yes/no questions with inversion;
  wh-questions (wo, wann, warum, wer, was); subordinate clauses with dass /
  weil / wenn (verb final, comma), also a fronted wenn-clause followed by the
  inverted main clause; und/aber coordination.  Unstressed object and
  reflexive pronouns precede a noun subject in the middle field (Heute sieht
  ihn der Mann. / weil sich Anna auf die Party freut).
* Negation: kein for indefinite, bare-plural and mass objects (keinen Hund,
  keine Hunde, kein Wasser, keine Angst); nicht after definite/pronoun/name
  objects (sieht den Hund nicht) and before predicates, adverbs and
  prepositional phrases (wohnt nicht in der Stadt, ist nicht müde).
* Pronoun/antecedent safety: 3rd-person singular pronouns and his/her are
  only generated where no singular noun whose German gender differs from its
  natural gender (animals, things, das Kind, das Mädchen, das Baby) could be
  the antecedent; "its" is never used; "your" (always dein) never appears
  together with "you all" (ihr); subject and object are never the same noun
  phrase (no hidden reflexives).
"""

from __future__ import annotations

import argparse
import bisect
import os
import random
import sys

# --------------------------------------------------------------------------
# German inflection tables
# --------------------------------------------------------------------------

DEF_ART = {
    "nom": {"m": "der", "f": "die", "n": "das", "pl": "die"},
    "acc": {"m": "den", "f": "die", "n": "das", "pl": "die"},
    "dat": {"m": "dem", "f": "der", "n": "dem", "pl": "den"},
}
# endings of ein/kein/mein/... (plural only for kein + possessives)
EIN_END = {
    "nom": {"m": "", "f": "e", "n": "", "pl": "e"},
    "acc": {"m": "en", "f": "e", "n": "", "pl": "e"},
    "dat": {"m": "em", "f": "er", "n": "em", "pl": "en"},
}
ADJ_END = {
    "weak": {
        "nom": {"m": "e", "f": "e", "n": "e", "pl": "en"},
        "acc": {"m": "en", "f": "e", "n": "e", "pl": "en"},
        "dat": {"m": "en", "f": "en", "n": "en", "pl": "en"},
    },
    "mixed": {
        "nom": {"m": "er", "f": "e", "n": "es", "pl": "en"},
        "acc": {"m": "en", "f": "e", "n": "es", "pl": "en"},
        "dat": {"m": "en", "f": "en", "n": "en", "pl": "en"},
    },
    "strong": {
        "nom": {"m": "er", "f": "e", "n": "es", "pl": "e"},
        "acc": {"m": "en", "f": "e", "n": "es", "pl": "e"},
        "dat": {"m": "em", "f": "er", "n": "em", "pl": "en"},
    },
}
CONTRACT = {
    ("zu", "dem"): "zum",
    ("zu", "der"): "zur",
    ("in", "dem"): "im",
    ("in", "das"): "ins",
    ("von", "dem"): "vom",
    ("bei", "dem"): "beim",
    ("an", "dem"): "am",
}
# English determiner -> German ein-type stem
EIN_STEM = {
    "a": "ein",
    "kein": "kein",
    "my": "mein",
    "your": "dein",
    "his": "sein",
    "her": "ihr",
    "our": "unser",
    "their": "ihr",
}
POSS = ("my", "your", "his", "her", "our", "their")
POSS_W = (0.22, 0.22, 0.11, 0.11, 0.17, 0.17)

# personal pronouns: en_nom, en_acc, person index, de_nom, de_acc, de_dat
# person index: 0 ich, 1 du, 2 er/sie/es, 3 wir, 4 ihr, 5 sie (plural)
PRON = {
    "I": ("I", "me", 0, "ich", "mich", "mir"),
    "you": ("you", "you", 1, "du", "dich", "dir"),
    "he": ("he", "him", 2, "er", "ihn", "ihm"),
    "she": ("she", "her", 2, "sie", "sie", "ihr"),
    "it": ("it", "it", 2, "es", "es", "ihm"),
    "we": ("we", "us", 3, "wir", "uns", "uns"),
    "you all": ("you all", "you all", 4, "ihr", "euch", "euch"),
    "they": ("they", "them", 5, "sie", "sie", "ihnen"),
}
PRON3 = ("he", "she", "it")
REFL = ("mich", "dich", "sich", "uns", "euch", "sich")
BE_EN = ("am", "are", "is", "are", "are", "are")
DO_EN = ("do", "do", "does", "do", "do", "do")

# --------------------------------------------------------------------------
# Verb conjugation
# --------------------------------------------------------------------------

_IRREG = {
    "sein": ("bin", "bist", "ist", "sind", "seid", "sind"),
    "haben": ("habe", "hast", "hat", "haben", "habt", "haben"),
    "wissen": ("weiß", "weißt", "weiß", "wissen", "wisst", "wissen"),
    "mögen": ("mag", "magst", "mag", "mögen", "mögt", "mögen"),
    "können": ("kann", "kannst", "kann", "können", "könnt", "können"),
    "wollen": ("will", "willst", "will", "wollen", "wollt", "wollen"),
    "müssen": ("muss", "musst", "muss", "müssen", "müsst", "müssen"),
}
_VOW = "aeiouäöüy"


def conjugate(inf: str, chg: str | None = None) -> tuple:
    """Present tense forms (ich, du, er, wir, ihr, sie) of a German verb.

    ``chg`` is the changed stem used for du/er (e.g. 'sieh' for sehen)."""
    if inf in _IRREG:
        return _IRREG[inf]
    if inf.endswith("eln"):
        st = inf[:-1]
        return (inf[:-3] + "le", st + "st", st + "t", inf, st + "t", inf)
    if inf.endswith("ern"):
        st = inf[:-1]
        return (st + "e", st + "st", st + "t", inf, st + "t", inf)
    st = inf[:-2]
    last = st[-1]
    e_ins = (
        last in "td"
        or (last in "mn" and st[-2] not in _VOW and st[-2] not in "lrmnh")
        or st.endswith(("chn", "chm"))
    )
    if e_ins:
        du, er = st + "est", st + "et"
    elif last in "sßzx":
        du, er = st + "t", st + "t"
    else:
        du, er = st + "st", st + "t"
    ihr = er
    if chg:
        if chg[-1] == "t":
            du, er = chg + "st", chg
        elif chg[-1] in "sßzx":
            du, er = chg + "t", chg + "t"
        else:
            du, er = chg + "st", chg + "t"
    return (st + "e", du, er, inf, ihr, inf)


def en_3sg(base: str) -> str:
    if base == "have":
        return "has"
    if base.endswith(("s", "sh", "ch", "x", "z", "o")):
        return base + "es"
    if base.endswith("y") and base[-2] not in "aeiou":
        return base[:-1] + "ies"
    return base + "s"


SEIN = conjugate("sein")
HABEN = conjugate("haben")
MODALS = {  # key: (German forms, English)
    "can": conjugate("können"),
    "want": conjugate("wollen"),
    "must": conjugate("müssen"),
}

# --------------------------------------------------------------------------
# Lexicon
# --------------------------------------------------------------------------
# Noun tags: P person, A animal, b flying animal, ! person whose German gender
# differs from natural gender (Kind/Mädchen/Baby), T portable thing, F solid
# food, D drink, M mass (no plural/no "a"), K cookable, c cuttable,
# R readable/writable, S singable/learnable, J tellable, O openable+closable,
# o openable only, w throwable, C container, I instrument, Z cleanable,
# Y repairable, X buildable, $ payable, L place, r residential place,
# q water, H high, U furniture, V vehicle, E event, W clothes,
# d definite/possessive only (no "a"), s singular only.
# Location letters (static, + dative): i in, a at (an), o on (auf), u under,
# b behind, f in front of (vor), n next to (neben).
# Direction letters: t to (zu+dat), I into (in+acc, places), J into
# (containers), O onto (auf+acc), T through, R around, X out of, F from (von,
# people and places), G from (von, things to jump/fall from), A across
# (über+acc); in verb specs also H home (nach Hause), C to a city (nach),
# c from a city (aus), W to work (zur Arbeit).
_NOUN_DATA = """
man|men|Mann|m|Männer||P|bfn|tF
woman|women|Frau|f|Frauen||P|bfn|tF
child|children|Kind|n|Kinder||P!|bfn|tF
boy|boys|Junge|m|Jungen|Jungen|P|bfn|tF
girl|girls|Mädchen|n|Mädchen||P!|bfn|tF
baby|babies|Baby|n|Babys||P!|bfn|t
teacher|teachers|Lehrer|m|Lehrer||P|bfn|tF
student|students|Student|m|Studenten|Studenten|P|bfn|tF
doctor|doctors|Arzt|m|Ärzte||P|bfn|tF
baker|bakers|Bäcker|m|Bäcker||P|bfn|tF
farmer|farmers|Bauer|m|Bauern|Bauern|P|bfn|tF
friend|friends|Freund|m|Freunde||P|bfn|tF
brother|brothers|Bruder|m|Brüder||P|bfn|tF
sister|sisters|Schwester|f|Schwestern||P|bfn|tF
father|fathers|Vater|m|Väter||P|bfn|tF
mother|mothers|Mutter|f|Mütter||P|bfn|tF
son|sons|Sohn|m|Söhne||P|bfn|tF
daughter|daughters|Tochter|f|Töchter||P|bfn|tF
uncle|uncles|Onkel|m|Onkel||P|bfn|tF
aunt|aunts|Tante|f|Tanten||P|bfn|tF
grandfather|grandfathers|Großvater|m|Großväter||P|bfn|tF
grandmother|grandmothers|Großmutter|f|Großmütter||P|bfn|tF
neighbour|neighbours|Nachbar|m|Nachbarn|Nachbarn|P|bfn|tF
king|kings|König|m|Könige||P|bfn|tF
queen|queens|Königin|f|Königinnen||P|bfn|tF
prince|princes|Prinz|m|Prinzen|Prinzen|P|bfn|tF
princess|princesses|Prinzessin|f|Prinzessinnen||P|bfn|tF
driver|drivers|Fahrer|m|Fahrer||P|bfn|tF
waiter|waiters|Kellner|m|Kellner||P|bfn|tF
singer|singers|Sänger|m|Sänger||P|bfn|tF
painter|painters|Maler|m|Maler||P|bfn|tF
judge|judges|Richter|m|Richter||P|bfn|tF
soldier|soldiers|Soldat|m|Soldaten|Soldaten|P|bfn|tF
pilot|pilots|Pilot|m|Piloten|Piloten|P|bfn|tF
customer|customers|Kunde|m|Kunden|Kunden|P|bfn|tF
guest|guests|Gast|m|Gäste||P|bfn|tF
boss|bosses|Chef|m|Chefs||P|bfn|tF
gentleman|gentlemen|Herr|m|Herren|Herrn|P|bfn|tF
lady|ladies|Dame|f|Damen||P|bfn|tF
police officer|police officers|Polizist|m|Polizisten|Polizisten|P|bfn|tF
dog|dogs|Hund|m|Hunde||A|bfn|t
cat|cats|Katze|f|Katzen||A|bfn|t
horse|horses|Pferd|n|Pferde||A|bfn|t
bird|birds|Vogel|m|Vögel||Ab|bfn|t
mouse|mice|Maus|f|Mäuse||A|bfn|t
cow|cows|Kuh|f|Kühe||A|bfn|t
pig|pigs|Schwein|n|Schweine||A|bfn|t
lion|lions|Löwe|m|Löwen|Löwen|A|bfn|t
bear|bears|Bär|m|Bären|Bären|A|bfn|t
monkey|monkeys|Affe|m|Affen|Affen|A|bfn|t
elephant|elephants|Elefant|m|Elefanten|Elefanten|A|bfn|t
rabbit|rabbits|Kaninchen|n|Kaninchen||A|bfn|t
duck|ducks|Ente|f|Enten||Ab|bfn|t
goose|geese|Gans|f|Gänse||Ab|bfn|t
goat|goats|Ziege|f|Ziegen||A|bfn|t
frog|frogs|Frosch|m|Frösche||A|bfn|t
wolf|wolves|Wolf|m|Wölfe||A|bfn|t
fox|foxes|Fuchs|m|Füchse||A|bfn|t
tiger|tigers|Tiger|m|Tiger||A|bfn|t
chicken|chickens|Huhn|n|Hühner||A|bfn|t
donkey|donkeys|Esel|m|Esel||A|bfn|t
snake|snakes|Schlange|f|Schlangen||A|bfn|t
owl|owls|Eule|f|Eulen||Ab|bfn|t
ball|balls|Ball|m|Bälle||Tw||
book|books|Buch|n|Bücher||TRO||
letter|letters|Brief|m|Briefe||TRo||
newspaper|newspapers|Zeitung|f|Zeitungen||TR||
story|stories|Geschichte|f|Geschichten||RJ||
key|keys|Schlüssel|m|Schlüssel||TI||
bag|bags|Tasche|f|Taschen||TCOW|i|J
hat|hats|Hut|m|Hüte||TW||
lamp|lamps|Lampe|f|Lampen||TY||
clock|clocks|Uhr|f|Uhren||TY||
flower|flowers|Blume|f|Blumen||T||
picture|pictures|Bild|n|Bilder||T||
cake|cakes|Kuchen|m|Kuchen||TFc||
plate|plates|Teller|m|Teller||TC|o|O
cup|cups|Tasse|f|Tassen||TC|i|J
bottle|bottles|Flasche|f|Flaschen||TCO|i|J
knife|knives|Messer|n|Messer||TI||
spoon|spoons|Löffel|m|Löffel||TI||
fork|forks|Gabel|f|Gabeln||TI||
camera|cameras|Kamera|f|Kameras||TY||
gift|gifts|Geschenk|n|Geschenke||ToE||
pen|pens|Stift|m|Stifte||TI||
card|cards|Karte|f|Karten||TR||
ring|rings|Ring|m|Ringe||T||
dress|dresses|Kleid|n|Kleider||TWZ||
coat|coats|Mantel|m|Mäntel||TW||
shoe|shoes|Schuh|m|Schuhe||TWZ||
apple|apples|Apfel|m|Äpfel||TFwc||
banana|bananas|Banane|f|Bananen||TF||
egg|eggs|Ei|n|Eier||TFK||
tomato|tomatoes|Tomate|f|Tomaten||TFc||
potato|potatoes|Kartoffel|f|Kartoffeln||TFKc||
carrot|carrots|Karotte|f|Karotten||TFc||
pear|pears|Birne|f|Birnen||TFc||
lemon|lemons|Zitrone|f|Zitronen||TFc||
sausage|sausages|Wurst|f|Würste||TFKc||
bone|bones|Knochen|m|Knochen||Tw||
box|boxes|Kiste|f|Kisten||TCO|ion|JO
suitcase|suitcases|Koffer|m|Koffer||TCO|in|J
mirror|mirrors|Spiegel|m|Spiegel||T|fn|
candle|candles|Kerze|f|Kerzen||T||
cookie|cookies|Keks|m|Kekse||TF||
salad|salads|Salat|m|Salate||F||
song|songs|Lied|n|Lieder||S||
poem|poems|Gedicht|n|Gedichte||RS||
joke|jokes|Witz|m|Witze||J||
bill|bills|Rechnung|f|Rechnungen||$||
ticket|tickets|Fahrkarte|f|Fahrkarten||T$||
umbrella|umbrellas|Regenschirm|m|Regenschirme||T||
phone|phones|Handy|n|Handys||TY||
computer|computers|Computer|m|Computer||TY||
chair|chairs|Stuhl|m|Stühle||UYX|ounb|OG
table|tables|Tisch|m|Tische||UYXZ|aoun|tOG
bed|beds|Bett|n|Betten||U|oun|OG
sofa|sofas|Sofa|n|Sofas||U|ounb|OG
cupboard|cupboards|Schrank|m|Schränke||UC|inbo|J
door|doors|Tür|f|Türen||OYZ|abfn|t
window|windows|Fenster|n|Fenster||OYZ|afn|t
tree|trees|Baum|m|Bäume||H|ubfn|tRG
car|cars|Auto|n|Autos||VYZ|ibfn|
bike|bikes|Fahrrad|n|Fahrräder||VYZ|bfn|
bus|buses|Bus|m|Busse||V|bfn|
train|trains|Zug|m|Züge||V||
boat|boats|Boot|n|Boote||VXY|i|
ship|ships|Schiff|n|Schiffe||V||
plane|planes|Flugzeug|n|Flugzeuge||V||
taxi|taxis|Taxi|n|Taxis||V|i|
water|-|Wasser|n|-||DM||
milk|-|Milch|f|-||DM||
coffee|-|Kaffee|m|-||DM||
tea|-|Tee|m|-||DM||
juice|-|Saft|m|-||DM||
beer|-|Bier|n|-||DM||
wine|-|Wein|m|-||DM||
soup|-|Suppe|f|-||FKM||
bread|-|Brot|n|-||FMc||
cheese|-|Käse|m|-||FMc||
meat|-|Fleisch|n|-||FKMc||
rice|-|Reis|m|-||FKM||
honey|-|Honig|m|-||FM||
house|houses|Haus|n|Häuser||LHZXr|ibfn|tIRX
city|cities|Stadt|f|Städte||Lr|i|ITX
park|parks|Park|m|Parks||L|i|tIT
garden|gardens|Garten|m|Gärten||L|i|IT
school|schools|Schule|f|Schulen||L|ibfn|tIXF
station|stations|Bahnhof|m|Bahnhöfe||L|afbn|tF
church|churches|Kirche|f|Kirchen||LH|ibfn|tIXR
bank|banks|Bank|f|Banken||L|ifn|tIX
kitchen|kitchens|Küche|f|Küchen||LZ|i|IX
room|rooms|Zimmer|n|Zimmer||LZ|i|IX
forest|forests|Wald|m|Wälder||L|i|ITX
village|villages|Dorf|n|Dörfer||Lr|i|ITX
market|markets|Markt|m|Märkte||L||tF
supermarket|supermarkets|Supermarkt|m|Supermärkte||L|i|tIX
office|offices|Büro|n|Büros||L|i|tIX
restaurant|restaurants|Restaurant|n|Restaurants||L|i|tIX
cinema|cinemas|Kino|n|Kinos||L|i|tIX
hotel|hotels|Hotel|n|Hotels||Lr|i|tIX
museum|museums|Museum|n|Museen||L|i|tIX
library|libraries|Bibliothek|f|Bibliotheken||L|i|tIX
hospital|hospitals|Krankenhaus|n|Krankenhäuser||L|i|tIX
street|streets|Straße|f|Straßen||L|o|OA
bridge|bridges|Brücke|f|Brücken||LHX|oua|tAFG
lake|lakes|See|m|Seen||Lq|ia|tIARF
river|rivers|Fluss|m|Flüsse||Lq|ia|tIA
sea|seas|Meer|n|Meere||Lq|ia|t
beach|beaches|Strand|m|Strände||L|a|tF
mountain|mountains|Berg|m|Berge||LH|o|tF
field|fields|Feld|n|Felder||L|o|T
shop|shops|Laden|m|Läden||L|i|tIX
bakery|bakeries|Bäckerei|f|Bäckereien||L|i|tIX
zoo|zoos|Zoo|m|Zoos||L|i|tI
castle|castles|Schloss|n|Schlösser||LHX|i|tIR
apartment|apartments|Wohnung|f|Wohnungen||LZr|i|IX
roof|roofs|Dach|n|Dächer||Y|o|OG
floor|floors|Boden|m|Böden||Z|o|O
tower|towers|Turm|m|Türme||LHX|o|tRFG
square|squares|Platz|m|Plätze||L|o|tAF
island|islands|Insel|f|Inseln||L|o|tF
bus stop|bus stops|Haltestelle|f|Haltestellen||L|a|tF
post office|-|Post|f|-||Ls|i|tIF
pharmacy|pharmacies|Apotheke|f|Apotheken||L|i|tIX
petrol station|petrol stations|Tankstelle|f|Tankstellen||L|a|tF
university|universities|Universität|f|Universitäten||L|a|tF
airport|airports|Flughafen|m|Flughäfen||L|a|tF
playground|playgrounds|Spielplatz|m|Spielplätze||L|o|tF
farm|farms|Bauernhof|m|Bauernhöfe||L|o|tF
swimming pool|swimming pools|Schwimmbad|n|Schwimmbäder||Lq|i|tI
town hall|town halls|Rathaus|n|Rathäuser||L|ifn|tIX
party|parties|Party|f|Partys||Es||
holiday|holidays|Urlaub|m|Urlaube||Es||
summer|summers|Sommer|m|Sommer||Esd||
winter|winters|Winter|m|Winter||Esd||
weekend|weekends|Wochenende|n|Wochenenden||Es||
concert|concerts|Konzert|n|Konzerte||Es||
trip|trips|Reise|f|Reisen||Es||
visit|visits|Besuch|m|Besuche||Es||
birthday|birthdays|Geburtstag|m|Geburtstage||Es||
game|games|Spiel|n|Spiele||Es||
"""

# Adjectives: English | German predicative | German attributive stem |
# noun tags it combines with | order class (for two-adjective phrases)
_ADJ_DATA = """
good|gut|gut|PATFDRVEUW|1
bad|schlecht|schlecht|PTFDRE|1
beautiful|schön|schön|PATLVUWE|1
ugly|hässlich|hässlich|PATLVUW|1
nice|nett|nett|P|1
friendly|freundlich|freundlich|PA|1
funny|lustig|lustig|PARJE|1
interesting|interessant|interessant|PRLE|1
boring|langweilig|langweilig|PRE|1
famous|berühmt|berühmt|PL|1
clever|klug|klug|PA|1
lazy|faul|faul|PA|1
brave|mutig|mutig|P|1
big|groß|groß|PATLVUHC|2
small|klein|klein|PATLVUHC|2
long|lang|lang|TLE|2
short|kurz|kurz|TRE|2
fat|dick|dick|PAR|2
thin|dünn|dünn|PAR|2
high|hoch|hoh|H|2
old|alt|alt|PATLVUW|3
young|jung|jung|PA|3
new|neu|neu|TLVUW|3
red|rot|rot|TVUW|5
blue|blau|blau|TVUW|5
green|grün|grün|TVUW|5
yellow|gelb|gelb|TVUW|5
black|schwarz|schwarz|ATVUW|5
white|weiß|weiß|ATVUW|5
brown|braun|braun|ATUW|5
grey|grau|grau|ATVUW|5
tired|müde|müd|PA|4
hungry|hungrig|hungrig|PA|4
thirsty|durstig|durstig|PA|4
happy|glücklich|glücklich|PA|4
sad|traurig|traurig|PA|4
angry|wütend|wütend|PA|4
sick|krank|krank|PA|4
rich|reich|reich|P|4
poor|arm|arm|PA|4
strong|stark|stark|PAD|4
weak|schwach|schwach|PA|4
fast|schnell|schnell|PAV|4
slow|langsam|langsam|PAV|4
expensive|teuer|teur|TVFDLUW|4
cheap|billig|billig|TVFDUW|4
heavy|schwer|schwer|TCU|4
clean|sauber|sauber|TLVUCW|4
dirty|schmutzig|schmutzig|TLVUCW|4
empty|leer|leer|CL|4
full|voll|voll|C|4
dark|dunkel|dunkl|L|4
bright|hell|hell|L|4
warm|warm|warm|DLW|4
cold|kalt|kalt|DFL|4
hot|heiß|heiß|DF|4
fresh|frisch|frisch|FD|4
sweet|süß|süß|FD|4
wet|nass|nass|PAW|4
dry|trocken|trocken|FW|4
round|rund|rund|TU|4
soft|weich|weich|FU|4
"""

NAMES = (
    ("Anna", "f"),
    ("Maria", "f"),
    ("Lisa", "f"),
    ("Sarah", "f"),
    ("Julia", "f"),
    ("Emma", "f"),
    ("Peter", "m"),
    ("Thomas", "m"),
    ("Paul", "m"),
    ("Max", "m"),
    ("Lukas", "m"),
    ("David", "m"),
)

CITIES = (
    ("Berlin", "Berlin"),
    ("Hamburg", "Hamburg"),
    ("Munich", "München"),
    ("Cologne", "Köln"),
    ("Vienna", "Wien"),
    ("Zurich", "Zürich"),
    ("Paris", "Paris"),
    ("London", "London"),
    ("Rome", "Rom"),
    ("Prague", "Prag"),
    ("Madrid", "Madrid"),
    ("Frankfurt", "Frankfurt"),
    ("Germany", "Deutschland"),
    ("Austria", "Österreich"),
    ("Italy", "Italien"),
    ("Spain", "Spanien"),
    ("France", "Frankreich"),
    ("England", "England"),
    ("Poland", "Polen"),
    ("Denmark", "Dänemark"),
)

FRONT_ADVS = (
    ("today", "heute"),
    ("tomorrow", "morgen"),
    ("now", "jetzt"),
    ("sometimes", "manchmal"),
    ("often", "oft"),
    ("every day", "jeden Tag"),
    ("every morning", "jeden Morgen"),
    ("every evening", "jeden Abend"),
    ("in the morning", "am Morgen"),
    ("in the evening", "am Abend"),
    ("at night", "in der Nacht"),
    ("on Monday", "am Montag"),
    ("on Tuesday", "am Dienstag"),
    ("on Wednesday", "am Mittwoch"),
    ("on Thursday", "am Donnerstag"),
    ("on Friday", "am Freitag"),
    ("on Saturday", "am Samstag"),
    ("on Sunday", "am Sonntag"),
    ("on the weekend", "am Wochenende"),
    ("in summer", "im Sommer"),
    ("in winter", "im Winter"),
    ("in spring", "im Frühling"),
    ("in autumn", "im Herbst"),
    ("at breakfast", "beim Frühstück"),
    ("at lunch", "beim Mittagessen"),
    ("at dinner", "beim Abendessen"),
    ("at work", "bei der Arbeit"),
    ("after school", "nach der Schule"),
    ("after work", "nach der Arbeit"),
    ("after dinner", "nach dem Abendessen"),
    ("before breakfast", "vor dem Frühstück"),
    ("unfortunately", "leider"),
    ("fortunately", "zum Glück"),
    ("of course", "natürlich"),
    ("maybe", "vielleicht"),
)
ADVS = {
    "fast": "schnell",
    "slowly": "langsam",
    "well": "gut",
    "badly": "schlecht",
    "loudly": "laut",
    "quietly": "leise",
    "a lot": "viel",
}
WH = {"where": "wo", "when": "wann", "why": "warum", "what": "was", "who": "wer"}
CONJ = {"because": "weil", "if": "wenn", "when": "wenn", "that": "dass"}

# English preposition key -> (English, German, case)
PREPS = {
    "in": ("in", "in", "dat"),
    "at": ("at", "an", "dat"),
    "on": ("on", "auf", "dat"),
    "under": ("under", "unter", "dat"),
    "behind": ("behind", "hinter", "dat"),
    "in front of": ("in front of", "vor", "dat"),
    "next to": ("next to", "neben", "dat"),
    "to": ("to", "zu", "dat"),
    "into": ("into", "in", "acc"),
    "onto": ("onto", "auf", "acc"),
    "through": ("through", "durch", "acc"),
    "around": ("around", "um", "acc"),
    "out of": ("out of", "aus", "dat"),
    "from": ("from", "von", "dat"),
    "across": ("across", "über", "acc"),
    "with": ("with", "mit", "dat"),
    "without": ("without", "ohne", "acc"),
    "against": ("against", "gegen", "acc"),
    "for": ("for", "für", "acc"),
    "with:bei": ("with", "bei", "dat"),
}
LOC_LETTER = {
    "i": "in",
    "a": "at",
    "o": "on",
    "u": "under",
    "b": "behind",
    "f": "in front of",
    "n": "next to",
}
DIR_LETTER = {
    "t": "to",
    "I": "into",
    "J": "into",
    "O": "onto",
    "T": "through",
    "R": "around",
    "X": "out of",
    "F": "from",
    "G": "from",
    "A": "across",
}


class Noun:
    __slots__ = (
        "adjs",
        "an",
        "an_pl",
        "de",
        "de_dpl",
        "de_pl",
        "dir",
        "en",
        "en_pl",
        "g",
        "loc",
        "mass",
        "no_indef",
        "obl",
        "sg_only",
        "tags",
        "unsafe",
    )

    def __init__(self, line):
        (en, en_pl, de, g, de_pl, obl, tags, loc, dir_) = line.split("|")
        self.en, self.de, self.g, self.tags = en, de, g, tags
        self.mass = "M" in tags
        self.sg_only = self.mass or "s" in tags
        self.no_indef = self.mass or "d" in tags
        self.en_pl = None if en_pl == "-" else en_pl
        self.de_pl = None if de_pl == "-" else de_pl
        if self.de_pl is None:
            self.de_dpl = None
        elif self.de_pl.endswith(("n", "s")):
            self.de_dpl = self.de_pl
        else:
            self.de_dpl = self.de_pl + "n"
        self.obl = obl or None  # weak masculine: acc/dat singular form
        # singular noun whose pronoun would not follow natural gender
        self.unsafe = ("P" not in tags) or ("!" in tags)
        self.loc, self.dir = loc, dir_
        self.adjs = []
        self.an = en[0] in "aeiou" and not en.startswith(("uni", "use", "eu"))


class Adj:
    __slots__ = ("an", "attr", "de", "en", "order", "tags")

    def __init__(self, line):
        en, de, attr, tags, order = line.split("|")
        self.en, self.de, self.attr, self.tags = en, de, attr, tags
        self.order = int(order)
        self.an = en[0] in "aeiou" and not en.startswith(("uni", "use", "eu"))


NOUNS = {}
for _l in _NOUN_DATA.strip().splitlines():
    _n = Noun(_l)
    assert _n.en not in NOUNS, _n.en
    NOUNS[_n.en] = _n
ADJS = {}
for _l in _ADJ_DATA.strip().splitlines():
    _a = Adj(_l)
    assert _a.en not in ADJS, _a.en
    ADJS[_a.en] = _a
for _n in NOUNS.values():
    _n.adjs = [a for a in ADJS.values() if any(t in a.tags for t in _n.tags)]
NOUN_LIST = list(NOUNS.values())

# sanity: no English noun form may be shared by two lemmas
_forms = {}
for _n in NOUN_LIST:
    for _f in (_n.en, _n.en_pl):
        if _f:
            assert _forms.setdefault(_f, _n.en) == _n.en, _f


# --------------------------------------------------------------------------
# Phrases
# --------------------------------------------------------------------------


class NP:
    """Noun phrase: kind 'n' noun, 'p' pronoun, 'name', 'c' coordination,
    'who' (interrogative subject)."""

    __slots__ = ("adjs", "det", "kind", "name", "neg", "noun", "num", "parts", "pr")

    def __init__(
        self, kind, noun=None, num="sg", det="the", adjs=(), pr=None, name=None, parts=None
    ):
        self.kind, self.noun, self.num, self.det = kind, noun, num, det
        self.adjs, self.pr, self.name, self.parts = adjs, pr, name, parts
        self.neg = False

    @property
    def person(self):
        k = self.kind
        if k == "p":
            return PRON[self.pr][2]
        if k == "n":
            return 2 if self.num == "sg" else 5
        if k == "c":
            return 5
        return 2

    def kein_able(self):
        return self.kind == "n" and (self.det == "a" or self.det == "none")

    def en(self, case="nom"):
        k = self.kind
        if k == "n":
            n = self.noun
            det = self.det
            out = []
            if det == "the":
                out.append("the")
            elif det == "a":
                first = self.adjs[0].an if self.adjs else n.an
                out.append("an" if first else "a")
            elif det != "none":
                out.append(det)
            for a in self.adjs:
                out.append(a.en)
            out.append(n.en if self.num == "sg" else n.en_pl)
            return " ".join(out)
        if k == "p":
            return PRON[self.pr][0 if case == "nom" else 1]
        if k == "name":
            return self.name
        if k == "c":
            return self.parts[0].en(case) + " and " + self.parts[1].en(case)
        return "who"

    def de(self, case="nom"):
        k = self.kind
        if k == "n":
            n = self.noun
            if self.num == "pl":
                g = "pl"
                word = n.de_dpl if case == "dat" else n.de_pl
            else:
                g = n.g
                word = n.obl if (case != "nom" and n.obl) else n.de
            det = self.det
            if self.neg and (det == "a" or det == "none"):
                det = "kein"
            if det == "the":
                out = [DEF_ART[case][g]]
                decl = "weak"
            elif det == "none":
                out = []
                decl = "strong"
            else:
                out = [EIN_STEM[det] + EIN_END[case][g]]
                decl = "mixed"
            if self.adjs:
                end = ADJ_END[decl][case][g]
                for a in self.adjs:
                    out.append(a.attr + end)
            out.append(word)
            return " ".join(out)
        if k == "p":
            p = PRON[self.pr]
            return p[3] if case == "nom" else (p[4] if case == "acc" else p[5])
        if k == "name":
            return self.name
        if k == "c":
            return self.parts[0].de(case) + " und " + self.parts[1].de(case)
        return "wer"


def noun_np(noun, det="the", num="sg", adjs=()):
    """Build a noun phrase, e.g. noun_np('dog', 'a', 'sg', ['big'])."""
    if isinstance(noun, str):
        noun = NOUNS[noun]
    adjs = tuple(ADJS[a] if isinstance(a, str) else a for a in adjs)
    return NP("n", noun=noun, num=num, det=det, adjs=adjs)


def pron_np(pr):
    return NP("p", pr=pr)


def name_np(name):
    return NP("name", name=name)


def coord_np(a, b):
    return NP("c", parts=(a, b))


WHO = NP("who")


class PP:
    """Prepositional phrase with an NP object; contracts zum/zur/im/ins/..."""

    __slots__ = ("np", "prep")

    def __init__(self, prep, np):
        self.prep, self.np = prep, np

    def en(self):
        return PREPS[self.prep][0] + " " + self.np.en("acc")

    def de(self):
        _, p, case = PREPS[self.prep]
        s = self.np.de(case)
        np = self.np
        if np.kind == "n" and np.det == "the" and not np.neg:
            art, rest = s.split(" ", 1)
            c = CONTRACT.get((p, art))
            if c:
                return c + " " + rest
        return p + " " + s


class FixedPP:
    __slots__ = ("_de", "_en")

    def __init__(self, en, de):
        self._en, self._de = en, de

    def en(self):
        return self._en

    def de(self):
        return self._de


HOME_LOC = FixedPP("at home", "zu Hause")
HOME_DIR = FixedPP("home", "nach Hause")
WORK_DIR = FixedPP("to work", "zur Arbeit")


def city_pp(kind, city):
    en, de = city
    if kind == "in":
        return FixedPP("in " + en, "in " + de)
    if kind == "to":
        return FixedPP("to " + en, "nach " + de)
    return FixedPP("from " + en, "aus " + de)


# --------------------------------------------------------------------------
# Verbs
# --------------------------------------------------------------------------


class Verb:
    __slots__ = (
        "adv",
        "alt",
        "dat",
        "de",
        "dir",
        "en",
        "en3",
        "for_",
        "forms",
        "frame",
        "instr",
        "key",
        "loc",
        "modal_ok",
        "obj",
        "prep",
        "refl",
        "req",
        "subj",
        "what_ok",
        "with_",
    )

    def __init__(
        self,
        frame,
        en,
        de,
        subj,
        obj="",
        chg=None,
        prep=None,
        loc="",
        dir="",
        with_="",
        adv="",
        for_=False,
        instr=(),
        dat="",
        alt=False,
        req=False,
        modal_ok=True,
        refl=False,
    ):
        self.frame, self.de, self.subj, self.obj = frame, de, subj, obj
        self.prep, self.loc, self.dir, self.with_ = prep, loc, dir, with_
        self.adv = tuple(adv.split(",")) if adv else ()
        self.for_, self.instr, self.dat, self.alt = for_, instr, dat, alt
        self.req, self.modal_ok, self.refl = req, modal_ok, refl
        words = en.split(" ", 1)
        self.en = en
        self.en3 = en_3sg(words[0]) + (" " + words[1] if len(words) > 1 else "")
        self.forms = conjugate(de, chg)
        self.what_ok = frame == "trans" and any(t in obj for t in "TFDRSJ$")
        self.key = frame + ":" + en


V = Verb
VERB_LIST = [
    # ---- intransitive (loc spec: p places, u furniture/vehicles,
    # c containers, a next to/behind/in front of people/animals, h at home,
    # k cities, q water places, r residential places)
    V("intr", "sleep", "schlafen", "PA", chg="schläf", loc="puhk", adv="well,badly"),
    V("intr", "work", "arbeiten", "P", loc="phk", with_="mit", adv="fast,slowly,well,a lot"),
    V("intr", "play", "spielen", "PA", loc="puah", with_="mit,gegen"),
    V("intr", "wait", "warten", "PA", loc="pua"),
    V("intr", "sit", "sitzen", "PA", loc="puah"),
    V("intr", "stand", "stehen", "PAT", loc="pua"),
    V("intr", "lie", "liegen", "PAT", loc="puch"),
    V("intr", "swim", "schwimmen", "PA", loc="q", dir="tIA", adv="fast,slowly,well,badly"),
    V("intr", "dance", "tanzen", "P", loc="ph", with_="mit", adv="well,badly"),
    V("intr", "sing", "singen", "PA", loc="ph", adv="well,badly,loudly,quietly"),
    V("intr", "laugh", "lachen", "P", loc="p", with_="mit", adv="loudly,quietly"),
    V("intr", "cry", "weinen", "P", loc="ph", adv="loudly,quietly"),
    V("intr", "smile", "lächeln", "P", loc="pa"),
    V("intr", "run", "laufen", "PA", chg="läuf", loc="p", dir="tITRXAOH", adv="fast,slowly"),
    V("intr", "go", "gehen", "PA", dir="tITRXAHCW", with_="mit,ohne"),
    V(
        "intr",
        "drive",
        "fahren",
        "P",
        chg="fähr",
        dir="tITAHCFW",
        with_="mit,ohne",
        adv="fast,slowly,well,badly",
    ),
    V("intr", "fly", "fliegen", "Pb", dir="HCA"),
    V("intr", "come", "kommen", "PA", dir="tIXFHCc", with_="mit,ohne"),
    V("intr", "travel", "reisen", "P", dir="C", with_="mit,ohne"),
    V("intr", "jump", "springen", "PA", dir="IOG"),
    V("intr", "climb", "klettern", "PA", dir="O"),
    V("intr", "hike", "wandern", "P", loc="p", with_="mit"),
    V("intr", "fall", "fallen", "PAT", chg="fäll", dir="IOG"),
    V("intr", "stay", "bleiben", "PA", loc="phk", with_="bei"),
    V("intr", "live", "wohnen", "PA", loc="rk", with_="bei", req=True),
    V("intr", "eat", "essen", "PA", chg="iss", loc="ph", adv="fast,slowly,a lot"),
    V("intr", "read", "lesen", "P", chg="lies", loc="ph", adv="fast,slowly,a lot"),
    V("intr", "cook", "kochen", "P", loc="ph", adv="well,badly"),
    # ---- accusative object
    V("trans", "see", "sehen", "PA", "PATVLUW", chg="sieh", loc="p"),
    V("trans", "hear", "hören", "PA", "PASV", loc="p"),
    V("trans", "like", "mögen", "PA", "PATFDVLE", modal_ok=False),
    V("trans", "love", "lieben", "P", "PA", modal_ok=False),
    V("trans", "need", "brauchen", "P", "TVFDC", modal_ok=False),
    V("trans", "have", "haben", "P", "ATV", modal_ok=False),
    V("trans", "buy", "kaufen", "P", "TFDVRW", loc="p", for_=True),
    V("trans", "sell", "verkaufen", "P", "TVAF", loc="p"),
    V("trans", "find", "finden", "PA", "TA", loc="pc"),
    V("trans", "look for", "suchen", "PA", "PAT", loc="p"),
    V("trans", "take", "nehmen", "P", "TF", chg="nimm"),
    V("trans", "carry", "tragen", "PA", "TC", chg="träg", dir="tIO"),
    V("trans", "wash", "waschen", "P", "AVW", chg="wäsch", instr=("water",)),
    V("trans", "eat", "essen", "PA", "F", chg="iss", loc="p", instr=("spoon", "fork")),
    V("trans", "drink", "trinken", "PA", "D", loc="p"),
    V("trans", "read", "lesen", "P", "R", chg="lies", loc="p"),
    V("trans", "write", "schreiben", "P", "R", for_=True, instr=("pen",)),
    V("trans", "cook", "kochen", "P", "K", for_=True, loc="p"),
    V("trans", "open", "öffnen", "P", "Oo", instr=("key", "knife")),
    V("trans", "close", "schließen", "P", "O"),
    V("trans", "paint", "malen", "P", "PATL", for_=True),
    V("trans", "draw", "zeichnen", "P", "PATL", for_=True, instr=("pen",)),
    V("trans", "catch", "fangen", "PA", "Aw", chg="fäng"),
    V("trans", "throw", "werfen", "P", "w", chg="wirf", dir="JIO"),
    V("trans", "meet", "treffen", "P", "P", chg="triff", loc="p"),
    V("trans", "visit", "besuchen", "P", "PL"),
    V("trans", "ask", "fragen", "P", "P"),
    V("trans", "call", "rufen", "P", "PA"),
    V("trans", "kiss", "küssen", "P", "PA"),
    V("trans", "hug", "umarmen", "P", "PA"),
    V("trans", "forget", "vergessen", "P", "TE", chg="vergiss", loc="pu"),
    V("trans", "know", "kennen", "PA", "PL", modal_ok=False),
    V("trans", "hold", "halten", "P", "TA", chg="hält"),
    V("trans", "clean", "putzen", "P", "Z"),
    V("trans", "repair", "reparieren", "P", "Y"),
    V("trans", "build", "bauen", "P", "X", for_=True),
    V("trans", "pay", "bezahlen", "P", "$P"),
    V("trans", "order", "bestellen", "P", "FD", loc="p"),
    V("trans", "count", "zählen", "P", "PAT"),
    V("trans", "feed", "füttern", "P", "A"),
    V("trans", "pet", "streicheln", "P", "A"),
    V("trans", "lose", "verlieren", "P", "T", loc="p"),
    V("trans", "hide", "verstecken", "PA", "T", loc="pcu"),
    V("trans", "steal", "stehlen", "PA", "TF", chg="stiehl"),
    V("trans", "pull", "ziehen", "PA", "TV", dir="t"),
    V("trans", "push", "schieben", "P", "TV", dir="tI"),
    V("trans", "watch", "beobachten", "PA", "PAV", loc="p"),
    V("trans", "fetch", "holen", "PA", "TF", for_=True),
    V("trans", "sing", "singen", "P", "S", for_=True),
    V("trans", "learn", "lernen", "P", "S"),
    V("trans", "use", "benutzen", "P", "I"),
    V("trans", "cut", "schneiden", "P", "c", instr=("knife",)),
    V("trans", "put", "legen", "P", "T", dir="JO", req=True),
    V("trans", "drive", "fahren", "P", "PA", chg="fähr", dir="tIHC", req=True),
    # ---- dative object
    V("dat", "help", "helfen", "PA", "PA", chg="hilf"),
    V("dat", "thank", "danken", "P", "P"),
    V("dat", "follow", "folgen", "PA", "PAV"),
    V("dat", "belong to", "gehören", "TAV", "P", modal_ok=False),
    V("dat", "answer", "antworten", "P", "P"),
    V("dat", "trust", "vertrauen", "PA", "PA"),
    V("dat", "wave to", "winken", "P", "P"),
    V("dat", "congratulate", "gratulieren", "P", "P"),
    # ---- dative + accusative
    V("ditr", "give", "geben", "P", "TF", chg="gib", dat="PA", alt=True),
    V("ditr", "show", "zeigen", "P", "TAV", dat="P", alt=True),
    V("ditr", "bring", "bringen", "P", "TFD", dat="PA", alt=True),
    V("ditr", "send", "schicken", "P", "TR", dat="P", alt=True),
    V("ditr", "buy", "kaufen", "P", "TFW", dat="P"),
    V("ditr", "sell", "verkaufen", "P", "TVA", dat="P", alt=True),
    V("ditr", "write", "schreiben", "P", "R", dat="P", alt=True),
    V("ditr", "tell", "erzählen", "P", "J", dat="P", alt=True),
    V("ditr", "throw", "werfen", "P", "w", chg="wirf", dat="PA", alt=True),
    V("ditr", "lend", "leihen", "P", "TV", dat="P", alt=True),
    V("ditr", "cook", "kochen", "P", "K", dat="P"),
    # ---- prepositional object: prep = (English, German, case)
    V("prep", "wait", "warten", "PA", "PAVE", prep=("for", "auf", "acc")),
    V("prep", "talk", "sprechen", "P", "PATVLE", chg="sprich", prep=("about", "über", "acc")),
    V("prep", "talk", "sprechen", "P", "P", chg="sprich", prep=("to", "mit", "dat")),
    V("prep", "ask", "bitten", "P", "TFD", prep=("for", "um", "acc")),
    V("prep", "fight", "kämpfen", "PA", "PA", prep=("against", "gegen", "acc")),
    V("prep", "dream", "träumen", "PA", "PATVLE", prep=("of", "von", "dat")),
    V("prep", "laugh", "lachen", "P", "PA", prep=("at", "über", "acc")),
    V("prep", "hope", "hoffen", "P", "E", prep=("for", "auf", "acc")),
    V(
        "prep",
        "look",
        "freuen",
        "P",
        "EP",
        prep=("forward to", "auf", "acc"),
        refl=True,
        modal_ok=False,
    ),
    # ---- special frames
    V("afraid", "be", "haben", "PA", "PA", modal_ok=False),
    V("cop_adj", "be", "sein", "PAT", modal_ok=False),
    V("cop_loc", "be", "sein", "PAT", loc="puachk", modal_ok=False),
    # ---- "that"-clause matrix verbs
    V("that", "know", "wissen", "P", modal_ok=False),
    V("that", "think", "denken", "P", modal_ok=False),
    V("that", "say", "sagen", "P", modal_ok=False),
    V("that", "hope", "hoffen", "P", modal_ok=False),
    V("that", "believe", "glauben", "P", modal_ok=False),
    V("that", "hear", "hören", "P", modal_ok=False),
]
VERBS = {}
for _v in VERB_LIST:
    if _v.prep:
        _v.key = _v.frame + ":" + _v.en + " " + _v.prep[0]
    assert _v.key not in VERBS, _v.key
    VERBS[_v.key] = _v


def find_verb(en, frame=None, obj=False, dat=False):
    """Look a verb up by its English form ('see', 'wait for', 'look forward
    to', 'belong to', ...) and the arguments it is used with."""
    if frame:
        return VERBS[frame + ":" + en]
    cands = [VERBS[k] for k in VERBS if k.split(":", 1)[1] == en]
    for fr in ("ditr",) if dat else ("trans", "dat", "prep") if obj else ("intr",):
        for v in cands:
            if v.frame == fr:
                return v
    raise KeyError(en)


# --------------------------------------------------------------------------
# Clauses
# --------------------------------------------------------------------------


class Clause:
    __slots__ = (
        "be",
        "de_mid",
        "en_rest",
        "fin",
        "frame",
        "inf",
        "modal",
        "neg",
        "p",
        "pobj",
        "refl",
        "s_de",
        "s_en",
        "s_pron",
        "subj",
        "verb",
    )


def _negate_object(obj):
    """Negate with kein on the object where German does; True if "nicht" must end the clause."""
    if obj.kein_able():
        obj.neg = True
        return False
    return True


def _place_object(c, obj, case, de):
    """Pronoun objects move to the start of the middle field (c.pobj); noun phrases stay put."""
    if obj.kind == "p":
        c.pobj = obj.de(case)
    else:
        de.append(obj.de(case))


def make_clause(
    subj,
    verb,
    obj=None,
    dat=None,
    pp=None,
    adv=None,
    adj=None,
    neg=False,
    modal=None,
    to_form=False,
    what=False,
):
    """Build a clause.  ``verb`` is a Verb or an English verb string.

    frames: intr (pp/adv optional), trans (obj [+pp]), dat (obj), ditr (dat +
    obj, ``to_form`` for "gives X to Y"), prep (obj = object of the verb's
    preposition), afraid / cop_adj (adj) / cop_loc (pp) for "be".
    ``what=True`` leaves out the accusative object (for "What does ... ?").
    """
    if isinstance(verb, str):
        if verb == "be":
            verb = VERBS["cop_adj:be" if adj is not None else "cop_loc:be"]
        elif verb == "be afraid of":
            verb = VERBS["afraid:be"]
        else:
            verb = find_verb(verb, obj=obj is not None or what, dat=dat is not None)
    c = Clause()
    c.subj, c.verb, c.modal, c.neg = subj, verb, modal, neg
    p = c.p = subj.person
    c.frame = f = verb.frame
    c.s_en = subj.en("nom")
    c.s_de = subj.de("nom")
    c.s_pron = subj.kind == "p"
    # unstressed pronouns (reflexive or object) stand at the start of the
    # middle field, i.e. before a noun-phrase subject in inverted and
    # subordinate clauses: "Heute sieht ihn der Mann", "weil sich Anna freut"
    c.refl = ""
    c.pobj = ""
    c.be = f in ("cop_adj", "cop_loc", "afraid")
    en, de = [], []
    nicht_end = False
    if f == "cop_adj":
        en.append(adj.en)
        if neg:
            de.append("nicht")
        de.append(adj.de)
    elif f == "cop_loc":
        if neg:
            de.append("nicht")
        if pp is not None:  # None only for "Where is ...?"
            en.append(pp.en())
            de.append(pp.de())
    elif f == "afraid":
        en.append("afraid of " + obj.en("acc"))
        de.append("keine Angst" if neg else "Angst")
        de.append("vor " + obj.de("dat"))
    elif f == "trans":
        if not what:
            en.append(obj.en("acc"))
            nicht_end = neg and _negate_object(obj)
            _place_object(c, obj, "acc", de)
        if pp is not None:
            if nicht_end:
                raise ValueError("nicht-negation with an adjunct PP")
            en.append(pp.en())
            de.append(pp.de())
    elif f == "dat":
        en.append(obj.en("acc"))
        nicht_end = neg and _negate_object(obj)
        _place_object(c, obj, "dat", de)
    elif f == "ditr":
        if to_form:
            en.append(obj.en("acc") + " to " + dat.en("acc"))
        else:
            en.append(dat.en("acc") + " " + obj.en("acc"))
        if neg:
            if obj.kein_able():
                obj.neg = True
            elif dat.kein_able():
                raise ValueError("negated ditransitive with indefinite dative")
            else:
                nicht_end = True
        de.append(dat.de("dat"))
        de.append(obj.de("acc"))
    elif f == "prep":
        pe, pd, case = verb.prep
        en.append(pe + " " + obj.en("acc"))
        if neg:
            de.append("nicht")
        de.append(PP_cls_for(pd, case, obj))
        if verb.refl:
            c.refl = REFL[p]
    elif f == "intr":
        x = pp if pp is not None else adv
        if verb.req and x is None:
            raise ValueError(verb.en + " needs a complement")
        if neg:
            de.append("nicht")
        if pp is not None:
            en.append(pp.en())
            de.append(pp.de())
        elif adv is not None:
            en.append(adv)
            de.append(ADVS[adv])
    else:
        raise ValueError(f)
    if nicht_end:
        de.append("nicht")
    if f == "afraid":
        c.fin = HABEN[p]
    elif c.be:
        c.fin = SEIN[p]
    elif modal:
        c.fin = MODALS[modal][p]
    else:
        c.fin = verb.forms[p]
    c.inf = verb.de if (modal and not c.be) else ""
    c.en_rest = " ".join(en)
    c.de_mid = " ".join(de)
    return c


def PP_cls_for(prep_de, case, np):
    """German PP for prepositional-object verbs (with contraction)."""
    s = np.de(case)
    if np.kind == "n" and np.det == "the" and not np.neg:
        art, rest = s.split(" ", 1)
        cc = CONTRACT.get((prep_de, art))
        if cc:
            return cc + " " + rest
    return prep_de + " " + s


def _en_core(c, question):
    """English clause without final punctuation (lower-case start)."""
    s, p, v = c.s_en, c.p, c.verb
    if c.be:
        b = BE_EN[p]
        core = (b + " " + s) if question else (s + " " + b + (" not" if c.neg else ""))
    elif c.modal == "can":
        if question:
            core = "can " + s + " " + v.en
        else:
            core = s + (" cannot " if c.neg else " can ") + v.en
    elif c.modal == "must":
        core = ("must " + s + " " + v.en) if question else (s + " must " + v.en)
    elif c.modal == "want":
        if question:
            core = DO_EN[p] + " " + s + " want to " + v.en
        elif c.neg:
            core = s + " " + DO_EN[p] + " not want to " + v.en
        else:
            core = s + (" wants to " if p == 2 else " want to ") + v.en
    else:
        if question:
            core = DO_EN[p] + " " + s + " " + v.en
        elif c.neg:
            core = s + " " + DO_EN[p] + " not " + v.en
        else:
            core = s + " " + (v.en3 if p == 2 else v.en)
    if c.en_rest:
        core += " " + c.en_rest
    return core


def _join(parts):
    return " ".join(x for x in parts if x)


def _de_inverted(c, first=""):
    """German clause with the finite verb before the subject (V1 / V2 after
    ``first``)."""
    if c.s_pron:
        return _join((first, c.fin, c.s_de, c.refl, c.pobj, c.de_mid, c.inf))
    return _join((first, c.fin, c.refl, c.pobj, c.s_de, c.de_mid, c.inf))


def _de_plain(c):
    return _join((c.s_de, c.fin, c.refl, c.pobj, c.de_mid, c.inf))


def _de_sub(c):
    if c.s_pron:
        return _join((c.s_de, c.refl, c.pobj, c.de_mid, c.inf, c.fin))
    return _join((c.refl, c.pobj, c.s_de, c.de_mid, c.inf, c.fin))


def cap(s):
    return s[0].upper() + s[1:]


def declarative(c, front=None):
    """Main clause.  ``front`` is an (English, German) fronted adverbial."""
    if front is None:
        return cap(_en_core(c, False)) + ".", cap(_de_plain(c)) + "."
    return (cap(front[0] + " " + _en_core(c, False)) + ".", cap(_de_inverted(c, front[1])) + ".")


def question(c, wh=None):
    """Yes/no question (wh=None) or wh-question: 'where', 'when', 'why',
    'what' (clause built with what=True) or 'who' (clause subject WHO)."""
    if wh == "who":
        return cap(_en_core(c, False)) + "?", cap(_de_plain(c)) + "?"
    if wh is None:
        return cap(_en_core(c, True)) + "?", cap(_de_inverted(c)) + "?"
    return (cap(wh + " " + _en_core(c, True)) + "?", cap(_de_inverted(c, WH[wh])) + "?")


def subordinate(main, conj, sub, sub_first=False, front=None):
    """Main clause + weil/wenn clause ('because', 'if', 'when')."""
    cd = CONJ[conj]
    if sub_first:
        return (
            cap(conj + " " + _en_core(sub, False) + ", " + _en_core(main, False)) + ".",
            cap(cd + " " + _de_sub(sub) + ", " + _de_inverted(main)) + ".",
        )
    en_main, de_main = declarative(main, front)
    return (
        en_main[:-1] + " " + conj + " " + _en_core(sub, False) + ".",
        de_main[:-1] + ", " + cd + " " + _de_sub(sub) + ".",
    )


def that_clause(subj, verb, sub):
    """'I know that ...' -> 'Ich weiß, dass ...'."""
    v = verb if isinstance(verb, Verb) else VERBS["that:" + verb]
    p = subj.person
    en = subj.en("nom") + " " + (v.en3 if p == 2 else v.en)
    de = subj.de("nom") + " " + v.forms[p]
    return (
        cap(en + " that " + _en_core(sub, False)) + ".",
        cap(de + ", dass " + _de_sub(sub)) + ".",
    )


def coordinate(c1, conj, c2):
    """'and' -> 'und' (no comma), 'but' -> ', aber'."""
    e1, e2 = _en_core(c1, False), _en_core(c2, False)
    d1, d2 = _de_plain(c1), _de_plain(c2)
    if conj == "and":
        return cap(e1 + " and " + e2) + ".", cap(d1 + " und " + d2) + "."
    return cap(e1 + ", but " + e2) + ".", cap(d1 + ", aber " + d2) + "."


# --------------------------------------------------------------------------
# Random generation
# --------------------------------------------------------------------------


def _cum(weights):
    out, t = [], 0.0
    for w in weights:
        t += w
        out.append(t)
    return out


def _wpick(rng, items, cum):
    """Weighted choice (faster than random.choices for one item)."""
    return items[bisect.bisect_right(cum, rng.random() * cum[-1])]


_POOL_CACHE = {}


def _nouns_with(tags):
    lst = _POOL_CACHE.get(tags)
    if lst is None:
        lst = [n for n in NOUN_LIST if any(t in n.tags for t in tags)]
        _POOL_CACHE[tags] = lst
    return lst


def _build_loc_pools():
    pools = {}
    for n in NOUN_LIST:
        for letter in n.loc:
            t = n.tags
            if "L" in t:
                cls = "p"
            elif "U" in t or "V" in t or "H" in t:
                cls = "u"
            elif "C" in t:
                cls = "c"
            elif "P" in t or "A" in t:
                cls = "a"
            else:
                cls = "u"
            pools.setdefault(cls, []).append((n, letter))
            if "q" in t:
                pools.setdefault("q", []).append((n, letter))
            if "r" in t and letter == "i":
                pools.setdefault("r", []).append((n, letter))
    return pools


LOC_POOLS = _build_loc_pools()
DIR_POOLS = {}
for _n in NOUN_LIST:
    for _d in _n.dir:
        DIR_POOLS.setdefault(_d, []).append(_n)

FRAMES = ("trans", "intr", "dat", "ditr", "prep", "cop_adj", "cop_loc", "afraid", "refl")
FRAME_W = (0.29, 0.30, 0.07, 0.09, 0.07, 0.08, 0.05, 0.025, 0.025)
MODAL_FRAMES = ("trans", "intr", "dat", "ditr", "prep")


def _by_frame():
    d = {f: [] for f in FRAMES}
    for v in VERB_LIST:
        if v.frame == "prep" and v.refl:
            d["refl"].append(v)
        elif v.frame in d:
            d[v.frame].append(v)
    return d


VERBS_BY_FRAME = _by_frame()
TRANS_WHAT = [v for v in VERBS_BY_FRAME["trans"] if v.what_ok]
INTR_STATIC = [v for v in VERBS_BY_FRAME["intr"] if v.loc and not v.req and not v.dir]
THAT_VERBS = [v for v in VERB_LIST if v.frame == "that"]
# transitive verbs that take an optional "without somebody" phrase
WITHOUT_OK = ("buy", "visit", "find", "look for", "eat", "drink", "order", "carry", "build")
INTR_MOTION = [v for v in VERBS_BY_FRAME["intr"] if v.dir]
INTR_OTHER = [v for v in VERBS_BY_FRAME["intr"] if not v.dir]
SUBJ_PRONS_P = ("I", "you", "he", "she", "we", "you all", "they")
SUBJ_PRONS_P_IT = (*SUBJ_PRONS_P, "it")
SUBJ_PRONS_P_W = (0.16, 0.16, 0.15, 0.15, 0.14, 0.09, 0.15)


class Ctx:
    """Bookkeeping for the pronoun/antecedent safety rule + stats labels."""

    __slots__ = ("labels", "poss3", "poss3_unsafe", "pron3", "unsafe", "youall", "your")

    def __init__(self):
        self.unsafe = self.pron3 = self.poss3 = self.poss3_unsafe = 0
        self.youall = self.your = 0
        self.labels = []

    def track(self, np):
        k = np.kind
        if k == "n":
            u = np.num == "sg" and np.noun.unsafe
            if u:
                self.unsafe += 1
            det = np.det
            if det == "his" or det == "her":
                self.poss3 += 1
                if u:
                    self.poss3_unsafe += 1
            elif det == "your":
                self.your += 1
        elif k == "p":
            if np.pr in PRON3:
                self.pron3 += 1
            elif np.pr == "you all":
                self.youall += 1
        elif k == "c":
            self.track(np.parts[0])
            self.track(np.parts[1])
        return np

    def ok(self, complex_):
        # "your" is always dein, so never combine it with "you all" (ihr)
        if self.poss3 > 1 or (self.your and self.youall):
            return False
        if self.poss3 and self.unsafe - self.poss3_unsafe > 0:
            return False
        return not (complex_ and self.pron3 and self.unsafe)


def _rand_noun_np(
    rng, ctx, noun, sg_only=False, allow_none=True, adj_p=0.22, indef_ok=True, def_p=0.54
):
    r = rng.random()
    if noun.mass:
        num = "sg"
        if r < 0.45:
            det = "the"
        elif r < 0.9:
            det = "none" if (allow_none and indef_ok) else "the"
        else:
            det = _wpick(rng, POSS, POSS_CW)
    elif noun.sg_only or sg_only or r < 0.72:
        num = "sg"
        r = rng.random()
        if noun.no_indef or not indef_ok:
            det = "the" if r < 0.8 else _wpick(rng, POSS, POSS_CW)
        else:
            if r < def_p:
                det = "the"
            elif r < def_p + (1.0 - def_p) * 0.7:
                det = "a"
            else:
                det = _wpick(rng, POSS, POSS_CW)
    else:
        num = "pl"
        r = rng.random()
        if allow_none and indef_ok:
            det = "the" if r < 0.52 else "none" if r < 0.86 else _wpick(rng, POSS, POSS_CW)
        else:
            det = "the" if r < 0.82 else _wpick(rng, POSS, POSS_CW)
    adjs = ()
    if noun.adjs and rng.random() < adj_p:
        a1 = rng.choice(noun.adjs)
        if rng.random() < 0.15:
            a2 = rng.choice(noun.adjs)
            if a2.order != a1.order:
                adjs = (a1, a2) if a1.order < a2.order else (a2, a1)
            else:
                adjs = (a1,)
        else:
            adjs = (a1,)
    return ctx.track(NP("n", noun=noun, num=num, det=det, adjs=adjs))


def _rand_np(
    rng,
    ctx,
    tags,
    pron_p=0.0,
    name_p=0.12,
    excl_person=None,
    sg_only=False,
    indef_ok=True,
    allow_none=True,
):
    """Random NP whose head fits one of ``tags``."""
    r = rng.random()
    if r < pron_p:
        if "P" in tags:
            cands = SUBJ_PRONS_P_IT if ("A" in tags or "T" in tags) else SUBJ_PRONS_P
        else:
            cands = ("it", "they")
        for _ in range(4):
            pr = rng.choice(cands)
            pp = PRON[pr][2]
            if excl_person is None or not (
                pp == excl_person or {pp, excl_person} <= {0, 3} or {pp, excl_person} <= {1, 4}
            ):
                return ctx.track(NP("p", pr=pr))
    elif "P" in tags and r < pron_p + name_p:
        return NP("name", name=rng.choice(NAMES)[0])
    noun = rng.choice(_nouns_with(tags))
    return _rand_noun_np(rng, ctx, noun, sg_only=sg_only, indef_ok=indef_ok, allow_none=allow_none)


def _rand_subject(rng, ctx, tags):
    r = rng.random()
    if r < 0.30:
        if "P" in tags:
            if ("A" in tags or "T" in tags) and rng.random() < 0.1:
                pr = "it"
            else:
                pr = _wpick(rng, SUBJ_PRONS_P, SUBJ_PRONS_P_CW)
        else:
            pr = "it" if rng.random() < 0.6 else "they"
        return ctx.track(NP("p", pr=pr))
    if "P" in tags and r < 0.42:
        return NP("name", name=rng.choice(NAMES)[0])
    if r > 0.975 and ("P" in tags or "A" in tags):
        a = _rand_np(rng, ctx, tags, name_p=0.2)
        b = _rand_np(rng, ctx, tags, name_p=0.2)
        if a.en() != b.en():
            ctx.labels.append("coord_subject")
            return NP("c", parts=(a, b))
    return _rand_np(rng, ctx, tags, name_p=0.0)


# location letters a verb never takes ("waits on" = bedienen, "laughs at" =
# lachen über, "smiles at" = anlächeln would make the English ambiguous)
LOC_EXCLUDE = {"wait": "o", "laugh": "a", "smile": "a"}
# direction letters that need a water noun for some verbs (swim into the lake)
DIR_NEED_WATER = {"swim": "IA", "jump": "I", "fall": "I"}


def _rand_loc(rng, ctx, spec, exclude=""):
    """Static location phrase for a loc spec string."""
    kind = rng.choice(spec)
    if kind == "h":
        return HOME_LOC
    if kind == "k":
        return city_pp("in", rng.choice(CITIES))
    noun, letter = rng.choice(LOC_POOLS[kind])
    while letter in exclude:
        noun, letter = rng.choice(LOC_POOLS[kind])
    np = _rand_noun_np(rng, ctx, noun, sg_only=True, adj_p=0.18, def_p=0.72)
    return PP(LOC_LETTER[letter], np)


DIR_W = {"t": 11, "I": 4, "F": 3, "G": 3, "X": 3, "T": 3, "J": 2, "O": 2, "c": 2}
_DIR_LISTS = {}


def _rand_dir(rng, ctx, spec, water=""):
    lst = _DIR_LISTS.get(spec)
    if lst is None:
        lst = _DIR_LISTS[spec] = [c for c in spec for _ in range(DIR_W.get(c, 1))]
    letter = rng.choice(lst)
    if letter == "H":
        return HOME_DIR
    if letter == "W":
        return WORK_DIR
    if letter == "C":
        return city_pp("to", rng.choice(CITIES))
    if letter == "c":
        return city_pp("from", rng.choice(CITIES))
    noun = rng.choice(DIR_POOLS[letter])
    while letter in water and "q" not in noun.tags:
        noun = rng.choice(DIR_POOLS[letter])
    if "P" in noun.tags or "A" in noun.tags:
        if "P" in noun.tags and rng.random() < 0.15:
            np = NP("name", name=rng.choice(NAMES)[0])
        else:
            np = _rand_noun_np(rng, ctx, noun, def_p=0.7)
    else:
        np = _rand_noun_np(rng, ctx, noun, sg_only=True, adj_p=0.18, def_p=0.78)
    return PP(DIR_LETTER[letter], np)


def _rand_clause(rng, ctx, neg=False, modal=False, wh=None):
    """Random clause.  wh: None, 'who' (subject), 'what' (object), 'where'
    (no location phrase)."""
    if wh == "where":
        frame = "intr" if rng.random() < 0.6 else "cop_loc"
    elif wh == "what":
        frame = "trans"
    else:
        frame = _wpick(rng, FRAMES, FRAME_CW)
    if frame == "trans" and wh == "what":
        v = rng.choice(TRANS_WHAT)
    elif frame == "intr" and wh == "where":
        v = rng.choice(INTR_STATIC)
    elif frame == "cop_adj":
        v = VERBS["cop_adj:be"]
    elif frame == "cop_loc":
        v = VERBS["cop_loc:be"]
    elif frame == "afraid":
        v = VERBS["afraid:be"]
    elif frame == "intr":
        v = rng.choice(INTR_MOTION if rng.random() < 0.65 else INTR_OTHER)
    else:
        v = rng.choice(VERBS_BY_FRAME[frame])
    if wh == "who" and "P" not in v.subj:
        v = rng.choice(VERBS_BY_FRAME["trans"])
        frame = "trans"
    md = None
    if modal and v.modal_ok:
        r = rng.random()
        md = "can" if r < 0.45 else "want" if r < 0.8 else "must"
        if neg and md == "must":
            md = "can"
    subj = WHO if wh == "who" else _rand_subject(rng, ctx, v.subj)
    sp = subj.person
    obj = dat = pp = adv = adj = None
    to_form = False
    f = v.frame
    if f == "trans":
        if wh != "what":
            obj = _rand_np(
                rng,
                ctx,
                v.obj,
                pron_p=0.1 if ("P" in v.obj or "A" in v.obj) else 0.0,
                excl_person=sp,
            )
            if v.req and neg and not obj.kein_able():
                obj = _rand_noun_np(rng, ctx, rng.choice(_nouns_with(v.obj)), indef_ok=True)
                if not obj.kein_able():
                    obj.det = "none" if (obj.num == "pl" or obj.noun.mass) else "a"
        negnicht = neg and obj is not None and not obj.kein_able()
        if v.req:
            pp = _rand_dir(rng, ctx, v.dir, DIR_NEED_WATER.get(v.en, ""))
        elif not negnicht and rng.random() < 0.4:
            opts = []
            if v.loc:
                opts.append("loc")
            if v.dir:
                opts.append("dir")
            if v.for_:
                opts.append("for")
            if v.instr:
                opts.append("instr")
            if v.en in WITHOUT_OK:
                opts.append("without")
            if opts:
                o = rng.choice(opts)
                if o == "loc":
                    pp = _rand_loc(rng, ctx, v.loc, LOC_EXCLUDE.get(v.en, ""))
                elif o == "dir":
                    pp = _rand_dir(rng, ctx, v.dir, DIR_NEED_WATER.get(v.en, ""))
                elif o == "for":
                    pp = PP("for", _rand_np(rng, ctx, "PA", name_p=0.15))
                elif o == "without":
                    pp = PP("without", _rand_np(rng, ctx, "PA", name_p=0.15))
                else:
                    n = NOUNS[rng.choice(v.instr)]
                    pp = PP("with", _rand_noun_np(rng, ctx, n, sg_only=True, adj_p=0.15))
    elif f == "dat":
        obj = _rand_np(rng, ctx, v.obj, pron_p=0.15, excl_person=sp)
    elif f == "ditr":
        dat = _rand_np(rng, ctx, v.dat, name_p=0.15, indef_ok=not neg, allow_none=False)
        obj = _rand_np(rng, ctx, v.obj, name_p=0.0)
        to_form = v.alt and rng.random() < 0.35
    elif f == "prep":
        obj = _rand_np(rng, ctx, v.obj, pron_p=0.0, name_p=0.1)
    elif f == "intr":
        r = rng.random()
        if wh == "where":
            pass
        elif v.req or r < 0.85:
            opts = []
            if v.loc:
                opts += ["loc", "loc"]
            if v.dir:
                opts += ["dir"] * 6
            if v.with_:
                opts += ["with", "with"]
            if v.adv and not v.req:
                opts.append("adv")
            o = rng.choice(opts) if opts else None
            if o == "loc":
                pp = _rand_loc(rng, ctx, v.loc, LOC_EXCLUDE.get(v.en, ""))
            elif o == "dir":
                pp = _rand_dir(rng, ctx, v.dir, DIR_NEED_WATER.get(v.en, ""))
            elif o == "with":
                w = rng.choice(v.with_.split(","))
                key = {"mit": "with", "ohne": "without", "gegen": "against", "bei": "with:bei"}[w]
                tags = "P" if w == "bei" else "PA"
                pp = PP(key, _rand_np(rng, ctx, tags, name_p=0.15))
            elif o == "adv":
                adv = rng.choice(v.adv)
    elif f == "cop_adj":
        if subj.kind == "n":
            cand = subj.noun.adjs
        elif subj.kind == "p" and subj.pr == "it":
            cand = ADJ_BY_TAG["AT"]
        else:
            cand = ADJ_BY_TAG["P"]
        adj = rng.choice(cand)
    elif f == "cop_loc":
        if wh != "where":
            pp = _rand_loc(rng, ctx, v.loc, LOC_EXCLUDE.get(v.en, ""))
    elif f == "afraid":
        obj = _rand_np(rng, ctx, v.obj, name_p=0.12)
    if subj.kind != "who":
        s_en = subj.en()
        for x in (obj, dat):
            if x is not None and x.en() == s_en:
                raise ValueError("same noun phrase as subject and object")
    ctx.labels.append("frame:" + ("refl" if v.refl else f))
    if md:
        ctx.labels.append("modal:" + md)
    return make_clause(
        subj,
        v,
        obj=obj,
        dat=dat,
        pp=pp,
        adv=adv,
        adj=adj,
        neg=neg,
        modal=md,
        to_form=to_form,
        what=wh == "what",
    )


ADJ_BY_TAG = {
    "P": [a for a in ADJS.values() if "P" in a.tags],
    "AT": [a for a in ADJS.values() if "A" in a.tags or "T" in a.tags],
}

SENT_TYPES = ("decl", "front", "ynq", "whq", "dass", "weil", "wenn", "wenn_front", "coord")
SENT_W = (0.29, 0.11, 0.11, 0.09, 0.09, 0.09, 0.05, 0.05, 0.05)
POSS_CW = _cum(POSS_W)
FRAME_CW = _cum(FRAME_W)
SENT_CW = _cum(SENT_W)
SUBJ_PRONS_P_CW = _cum(SUBJ_PRONS_P_W)
MAX_EN_WORDS = 22


def _try_pair(rng):
    ctx = Ctx()
    t = _wpick(rng, SENT_TYPES, SENT_CW)
    lab = ctx.labels
    lab.append(t)
    complex_ = False
    if t == "decl" or t == "front":
        neg = rng.random() < (0.3 if t == "decl" else 0.22)
        c = _rand_clause(rng, ctx, neg=neg, modal=rng.random() < 0.13)
        front = rng.choice(FRONT_ADVS) if t == "front" else None
        pair = declarative(c, front)
    elif t == "ynq":
        c = _rand_clause(rng, ctx, modal=rng.random() < 0.15)
        pair = question(c)
    elif t == "whq":
        wh = rng.choice(("where", "when", "why", "who", "what"))
        lab.append("wh:" + wh)
        c = _rand_clause(
            rng, ctx, modal=rng.random() < 0.12, wh=wh if wh in ("who", "what", "where") else None
        )
        pair = question(c, wh)
    elif t == "dass":
        complex_ = True
        v = rng.choice(THAT_VERBS)
        subj = _rand_subject(rng, ctx, "P")
        sub = _rand_clause(rng, ctx, neg=rng.random() < 0.22, modal=rng.random() < 0.12)
        pair = that_clause(subj, v, sub)
    elif t in ("weil", "wenn", "wenn_front"):
        complex_ = True
        main = _rand_clause(rng, ctx, neg=rng.random() < 0.2, modal=rng.random() < 0.1)
        sub = _rand_clause(rng, ctx, neg=rng.random() < 0.2, modal=rng.random() < 0.1)
        conj = "because" if t == "weil" else ("if" if rng.random() < 0.5 else "when")
        front = None
        if t != "wenn_front" and rng.random() < 0.12:
            front = rng.choice(FRONT_ADVS)
            lab.append("front")
        pair = subordinate(main, conj, sub, sub_first=t == "wenn_front", front=front)
    else:
        complex_ = True
        c1 = _rand_clause(rng, ctx, neg=rng.random() < 0.2)
        c2 = _rand_clause(rng, ctx, neg=rng.random() < 0.2)
        pair = coordinate(c1, "and" if rng.random() < 0.5 else "but", c2)
    if not ctx.ok(complex_):
        return None
    n = pair[0].count(" ") + 1
    if n < 3 or n > MAX_EN_WORDS:
        return None
    return pair, lab


def random_pair_labeled(rng):
    """One random (English, German) pair plus construction labels."""
    while True:
        try:
            r = _try_pair(rng)
        except ValueError:
            continue
        if r is not None:
            return r


def random_pair(rng: random.Random) -> tuple[str, str]:
    """One random (English, German) pair drawn with ``rng``."""
    return random_pair_labeled(rng)[0]


def generate_pairs(n: int, seed: int) -> list[tuple[str, str]]:
    """``n`` pairs with unique English sides, deterministic in ``seed``."""
    rng = random.Random(seed)
    seen = {}
    out = []
    while len(out) < n:
        en, de = random_pair(rng)
        old = seen.get(en)
        if old is None:
            seen[en] = de
            out.append((en, de))
        elif old != de:
            raise RuntimeError(f"two German outputs for {en!r}: {old!r} / {de!r}")
    return out


def split_pairs(pairs, n_train, n_valid, n_test):
    assert len(pairs) == n_train + n_valid + n_test
    return {
        "train": pairs[:n_train],
        "valid": pairs[n_train : n_train + n_valid],
        "test": pairs[n_train + n_valid :],
    }


def write_corpus(out_dir, seed=1234, n_train=30000, n_valid=1000, n_test=1000):
    pairs = generate_pairs(n_train + n_valid + n_test, seed)
    os.makedirs(out_dir, exist_ok=True)
    for split, ps in split_pairs(pairs, n_train, n_valid, n_test).items():
        for idx, lang in ((0, "en"), (1, "de")):
            path = os.path.join(out_dir, f"{split}.{lang}")
            with open(path, "w", encoding="utf-8", newline="\n") as fh:
                fh.write("".join(p[idx] + "\n" for p in ps))
    return pairs


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="data/toy-en-de")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--train", type=int, default=30000)
    ap.add_argument("--valid", type=int, default=1000)
    ap.add_argument("--test", type=int, default=1000)
    args = ap.parse_args(argv)
    write_corpus(args.out, args.seed, args.train, args.valid, args.test)
    print(f"wrote {args.train}/{args.valid}/{args.test} pairs to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
