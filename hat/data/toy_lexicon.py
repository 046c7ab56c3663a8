"""Word lists of the embedded toy task: English-like source, German-like target.

Plain data, read by :mod:`hat.data.toy`. German nouns carry a gender (m/f/n) that
drives the article and adjective endings; verbs carry the forms the grammar needs.
"""

from __future__ import annotations

from typing import NamedTuple


class Noun(NamedTuple):
    en: str
    en_pl: str
    de: str
    de_pl: str
    gender: str  # "m", "f" or "n"
    animate: bool


class Adjective(NamedTuple):
    en: str
    de: str  # predicative form ("müde")
    de_stem: str  # attributive stem before the ending ("müd" + "e")


class Verb(NamedTuple):
    en: str  # base form
    en_3sg: str
    en_pp: str
    de_inf: str  # full infinitive, separable prefix included ("aufmachen")
    de_1sg: str  # finite forms without the separable prefix
    de_3sg: str
    de_pl: str
    de_pp: str  # participle, prefix included ("aufgemacht")
    prefix: str = ""  # separable prefix ("auf"), goes to the clause end in main clauses
    aux: str = "haben"  # perfect auxiliary: "haben" or "sein"


def _nouns(table: str, animate: bool) -> list[Noun]:
    rows = [line.split() for line in table.strip().splitlines()]
    return [Noun(en, en_pl, de, de_pl, g, animate) for en, en_pl, de, de_pl, g in rows]


ANIMATE_NOUNS = _nouns(
    """
dog dogs Hund Hunde m
cat cats Katze Katzen f
man men Mann Männer m
woman women Frau Frauen f
child children Kind Kinder n
girl girls Mädchen Mädchen n
teacher teachers Lehrer Lehrer m
doctor doctors Arzt Ärzte m
friend friends Freund Freunde m
baby babies Baby Babys n
bird birds Vogel Vögel m
horse horses Pferd Pferde n
cow cows Kuh Kühe f
mouse mice Maus Mäuse f
cook cooks Koch Köche m
farmer farmers Landwirt Landwirte m
king kings König Könige m
queen queens Königin Königinnen f
sister sisters Schwester Schwestern f
brother brothers Bruder Brüder m
mother mothers Mutter Mütter f
father fathers Vater Väter m
pupil pupils Schüler Schüler m
guest guests Gast Gäste m
thief thieves Dieb Diebe m
painter painters Maler Maler m
singer singers Sänger Sänger m
dancer dancers Tänzer Tänzer m
owl owls Eule Eulen f
wolf wolves Wolf Wölfe m
fox foxes Fuchs Füchse m
duck ducks Ente Enten f
pig pigs Schwein Schweine n
goat goats Ziege Ziegen f
chicken chickens Huhn Hühner n
frog frogs Frosch Frösche m
snake snakes Schlange Schlangen f
tiger tigers Tiger Tiger m
rabbit rabbits Kaninchen Kaninchen n
""",
    animate=True,
)

THING_NOUNS = _nouns(
    """
house houses Haus Häuser n
car cars Auto Autos n
ball balls Ball Bälle m
book books Buch Bücher n
table tables Tisch Tische m
chair chairs Stuhl Stühle m
door doors Tür Türen f
window windows Fenster Fenster n
garden gardens Garten Gärten m
kitchen kitchens Küche Küchen f
city cities Stadt Städte f
street streets Straße Straßen f
tree trees Baum Bäume m
flower flowers Blume Blumen f
apple apples Apfel Äpfel m
letter letters Brief Briefe m
picture pictures Bild Bilder n
lamp lamps Lampe Lampen f
bed beds Bett Betten n
cup cups Tasse Tassen f
bottle bottles Flasche Flaschen f
bag bags Tasche Taschen f
hat hats Hut Hüte m
shoe shoes Schuh Schuhe m
key keys Schlüssel Schlüssel m
computer computers Computer Computer m
phone phones Telefon Telefone n
train trains Zug Züge m
boat boats Boot Boote n
river rivers Fluss Flüsse m
mountain mountains Berg Berge m
forest forests Wald Wälder m
school schools Schule Schulen f
church churches Kirche Kirchen f
shop shops Laden Läden m
room rooms Zimmer Zimmer n
box boxes Kiste Kisten f
song songs Lied Lieder n
story stories Geschichte Geschichten f
game games Spiel Spiele n
glass glasses Glas Gläser n
plate plates Teller Teller m
knife knives Messer Messer n
spoon spoons Löffel Löffel m
coat coats Mantel Mäntel m
dress dresses Kleid Kleider n
newspaper newspapers Zeitung Zeitungen f
map maps Karte Karten f
clock clocks Uhr Uhren f
wall walls Wand Wände f
roof roofs Dach Dächer n
bridge bridges Brücke Brücken f
island islands Insel Inseln f
village villages Dorf Dörfer n
castle castles Schloss Schlösser n
tower towers Turm Türme m
field fields Feld Felder n
stone stones Stein Steine m
egg eggs Ei Eier n
potato potatoes Kartoffel Kartoffeln f
banana bananas Banane Bananen f
cake cakes Kuchen Kuchen m
bicycle bicycles Fahrrad Fahrräder n
plane planes Flugzeug Flugzeuge n
guitar guitars Gitarre Gitarren f
piano pianos Klavier Klaviere n
camera cameras Kamera Kameras f
pencil pencils Bleistift Bleistifte m
umbrella umbrellas Regenschirm Regenschirme m
ring rings Ring Ringe m
gift gifts Geschenk Geschenke n
doll dolls Puppe Puppen f
""",
    animate=False,
)

# Places used after prepositions ("in the garden" -> "im Garten").
PLACE_NOUNS = [
    n
    for n in THING_NOUNS
    if n.en
    in {
        "house",
        "car",
        "garden",
        "kitchen",
        "city",
        "street",
        "tree",
        "room",
        "school",
        "church",
        "shop",
        "forest",
        "river",
        "mountain",
        "village",
        "castle",
        "tower",
        "field",
        "boat",
        "train",
        "bridge",
        "island",
        "table",
        "bed",
        "box",
        "bag",
        "wall",
        "plane",
    }
]

ADJECTIVES = [
    Adjective(*row.split())
    for row in """
big groß groß
small klein klein
old alt alt
young jung jung
new neu neu
red rot rot
blue blau blau
green grün grün
yellow gelb gelb
black schwarz schwarz
white weiß weiß
happy glücklich glücklich
sad traurig traurig
tired müde müd
beautiful schön schön
ugly hässlich hässlich
fast schnell schnell
slow langsam langsam
loud laut laut
quiet leise leis
warm warm warm
cold kalt kalt
clean sauber sauber
expensive teuer teur
cheap billig billig
heavy schwer schwer
long lang lang
short kurz kurz
high hoch hoh
dark dunkel dunkl
bright hell hell
friendly freundlich freundlich
funny lustig lustig
clever klug klug
brave mutig mutig
lazy faul faul
strong stark stark
hungry hungrig hungrig
famous berühmt berühmt
strange seltsam seltsam
poor arm arm
rich reich reich
wild wild wild
dirty schmutzig schmutzig
empty leer leer
round rund rund
soft weich weich
wet nass nass
""".strip().splitlines()
]


def _verbs(table: str) -> list[Verb]:
    verbs = []
    for line in table.strip().splitlines():
        cells = [c.replace("_", " ") for c in line.split()]
        verbs.append(Verb(*cells[:8], prefix="" if cells[8] == "-" else cells[8], aux=cells[9]))
    return verbs


# en en_3sg en_pp | de_inf de_1sg de_3sg de_pl de_pp prefix aux   ("_" joins English particles)
TRANSITIVE_VERBS = _verbs("""
see sees seen sehen sehe sieht sehen gesehen - haben
find finds found finden finde findet finden gefunden - haben
buy buys bought kaufen kaufe kauft kaufen gekauft - haben
sell sells sold verkaufen verkaufe verkauft verkaufen verkauft - haben
hold holds held halten halte hält halten gehalten - haben
carry carries carried tragen trage trägt tragen getragen - haben
like likes liked mögen mag mag mögen gemocht - haben
read reads read lesen lese liest lesen gelesen - haben
write writes written schreiben schreibe schreibt schreiben geschrieben - haben
paint paints painted malen male malt malen gemalt - haben
wash washes washed waschen wasche wäscht waschen gewaschen - haben
cook cooks cooked kochen koche kocht kochen gekocht - haben
eat eats eaten essen esse isst essen gegessen - haben
visit visits visited besuchen besuche besucht besuchen besucht - haben
need needs needed brauchen brauche braucht brauchen gebraucht - haben
build builds built bauen baue baut bauen gebaut - haben
show shows shown zeigen zeige zeigt zeigen gezeigt - haben
hear hears heard hören höre hört hören gehört - haben
love loves loved lieben liebe liebt lieben geliebt - haben
catch catches caught fangen fange fängt fangen gefangen - haben
throw throws thrown werfen werfe wirft werfen geworfen - haben
watch watches watched beobachten beobachte beobachtet beobachten beobachtet - haben
clean cleans cleaned putzen putze putzt putzen geputzt - haben
repair repairs repaired reparieren repariere repariert reparieren repariert - haben
forget forgets forgotten vergessen vergesse vergisst vergessen vergessen - haben
describe describes described beschreiben beschreibe beschreibt beschreiben beschrieben - haben
draw draws drawn zeichnen zeichne zeichnet zeichnen gezeichnet - haben
meet meets met treffen treffe trifft treffen getroffen - haben
ask asks asked fragen frage fragt fragen gefragt - haben
greet greets greeted begrüßen begrüße begrüßt begrüßen begrüßt - haben
look_for looks_for looked_for suchen suche sucht suchen gesucht - haben
take takes taken nehmen nehme nimmt nehmen genommen - haben
count counts counted zählen zähle zählt zählen gezählt - haben
feed feeds fed füttern füttere füttert füttern gefüttert - haben
pull pulls pulled ziehen ziehe zieht ziehen gezogen - haben
push pushes pushed schieben schiebe schiebt schieben geschoben - haben
bake bakes baked backen backe backt backen gebacken - haben
order orders ordered bestellen bestelle bestellt bestellen bestellt - haben
understand understands understood verstehen verstehe versteht verstehen verstanden - haben
pay_for pays_for paid_for bezahlen bezahle bezahlt bezahlen bezahlt - haben
choose chooses chosen wählen wähle wählt wählen gewählt - haben
open opens opened aufmachen mache macht machen aufgemacht auf haben
close closes closed zumachen mache macht machen zugemacht zu haben
pick_up picks_up picked_up aufheben hebe hebt heben aufgehoben auf haben
call calls called anrufen rufe ruft rufen angerufen an haben
bring brings brought mitbringen bringe bringt bringen mitgebracht mit haben
invite invites invited einladen lade lädt laden eingeladen ein haben
switch_on switches_on switched_on einschalten schalte schaltet schalten eingeschaltet ein haben
switch_off switches_off switched_off ausschalten schalte schaltet schalten ausgeschaltet aus haben
put_away puts_away put_away wegräumen räume räumt räumen weggeräumt weg haben
""")

INTRANSITIVE_VERBS = _verbs("""
sleep sleeps slept schlafen schlafe schläft schlafen geschlafen - haben
run runs run laufen laufe läuft laufen gelaufen - sein
swim swims swum schwimmen schwimme schwimmt schwimmen geschwommen - sein
laugh laughs laughed lachen lache lacht lachen gelacht - haben
sing sings sung singen singe singt singen gesungen - haben
dance dances danced tanzen tanze tanzt tanzen getanzt - haben
wait waits waited warten warte wartet warten gewartet - haben
play plays played spielen spiele spielt spielen gespielt - haben
work works worked arbeiten arbeite arbeitet arbeiten gearbeitet - haben
come comes come kommen komme kommt kommen gekommen - sein
go goes gone gehen gehe geht gehen gegangen - sein
sit sits sat sitzen sitze sitzt sitzen gesessen - haben
stand stands stood stehen stehe steht stehen gestanden - haben
jump jumps jumped springen springe springt springen gesprungen - sein
cry cries cried weinen weine weint weinen geweint - haben
fly flies flown fliegen fliege fliegt fliegen geflogen - sein
live lives lived wohnen wohne wohnt wohnen gewohnt - haben
climb climbs climbed klettern klettere klettert klettern geklettert - sein
talk talks talked reden rede redet reden geredet - haben
smile smiles smiled lächeln lächle lächelt lächeln gelächelt - haben
get_up gets_up got_up aufstehen stehe steht stehen aufgestanden auf sein
arrive arrives arrived ankommen komme kommt kommen angekommen an sein
fall_asleep falls_asleep fallen_asleep einschlafen schlafe schläft schlafen eingeschlafen ein sein
wake_up wakes_up woken_up aufwachen wache wacht wachen aufgewacht auf sein
go_away goes_away gone_away weggehen gehe geht gehen weggegangen weg sein
""")

# Verbs that take a "that" clause: "says that ..." -> "sagt, dass ...".
SAYING_VERBS = _verbs("""
say says said sagen sage sagt sagen gesagt - haben
think thinks thought denken denke denkt denken gedacht - haben
know knows known wissen weiß weiß wissen gewusst - haben
believe believes believed glauben glaube glaubt glauben geglaubt - haben
hope hopes hoped hoffen hoffe hofft hoffen gehofft - haben
""")


class Modal(NamedTuple):
    en: str  # "can"
    en_3sg: str  # "can" / "wants to"
    en_neg: str  # "cannot"
    en_neg_3sg: str
    de_sg: str  # "kann" (1sg and 3sg)
    de_pl: str  # "können"
    de_neg_sg: str  # "must not" is "darf nicht", not "muss nicht"
    de_neg_pl: str


MODALS = [
    Modal("can", "can", "cannot", "cannot", "kann", "können", "kann", "können"),
    Modal("must", "must", "must not", "must not", "muss", "müssen", "darf", "dürfen"),
    Modal(
        "want to",
        "wants to",
        "do not want to",
        "does not want to",
        "will",
        "wollen",
        "will",
        "wollen",
    ),
    Modal("may", "may", "may not", "may not", "darf", "dürfen", "darf", "dürfen"),
]

# English pronoun, German pronoun, person ("1sg", "3sg", "pl").
PRONOUNS = [
    ("I", "ich", "1sg"),
    ("he", "er", "3sg"),
    ("she", "sie", "3sg"),
    ("it", "es", "3sg"),
    ("we", "wir", "pl"),
    ("they", "sie", "pl"),
]

# Possessive determiners: English, German ein-word stem.
POSSESSIVES = [("my", "mein"), ("his", "sein"), ("her", "ihr"), ("our", "unser")]

# Prepositions taking the dative, with contractions of "dem".
PREPOSITIONS = [
    ("with", "mit", None),
    ("in", "in", "im"),
    ("from", "von", "vom"),
    ("near", "bei", "beim"),
    ("behind", "hinter", None),
    ("under", "unter", None),
    ("next to", "neben", None),
    ("in front of", "vor", None),
    ("after", "nach", None),
]

# Time adverbs: fronting one in German puts the verb before the subject.
ADVERBS = [
    ("today", "heute"),
    ("now", "jetzt"),
    ("often", "oft"),
    ("sometimes", "manchmal"),
    ("tomorrow", "morgen"),
    ("always", "immer"),
    ("rarely", "selten"),
    ("usually", "meistens"),
]

# Subordinating conjunctions: the German clause they open is verb-final.
SUBORDINATORS = [
    ("because", "weil"),
    ("when", "wenn"),
    ("although", "obwohl"),
    ("while", "während"),
    ("if", "falls"),
    ("before", "bevor"),
]

DE_UNITS = ["", "ein", "zwei", "drei", "vier", "fünf", "sechs", "sieben", "acht", "neun"]
DE_TEENS = [
    "zehn",
    "elf",
    "zwölf",
    "dreizehn",
    "vierzehn",
    "fünfzehn",
    "sechzehn",
    "siebzehn",
    "achtzehn",
    "neunzehn",
]
DE_TENS = [
    "",
    "",
    "zwanzig",
    "dreißig",
    "vierzig",
    "fünfzig",
    "sechzig",
    "siebzig",
    "achtzig",
    "neunzig",
]
