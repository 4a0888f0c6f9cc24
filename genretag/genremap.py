"""From the spellings of genre tags people write to the model's labels: the table and how tags are compared.

Two comparisons, on purpose of different strictness:

* :func:`label_key` (case and spacing only) groups tag values into labels for
  ``train --from-library``: "Smooth  jazz" and "smooth jazz" are one label, "Hip-Hop" and "Hip Hop" two.
* :func:`spelling_key` (letters and digits only) looks a tag up in the mapping table, so "Hip-Hop",
  "hip hop" and "HipHop" are one entry.

The default table (:data:`DEFAULT_SPELLINGS`, listed in docs/tags.md) maps common spellings to the 10
GTZAN genres. A tag that is in no table stays unmapped: nothing is guessed from parts of words. A
user file (``GENRETAG_TAG_MAP``) adds entries or overrides them, one ``spelling = genre`` a line;
an empty right-hand side removes a default entry.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

VALUE_SEPARATORS = re.compile(r"[;/|\x00]")  # between the values of one multi-valued tag ("Rock; Pop", "Hip-Hop/Rap")

DEFAULT_SPELLINGS: dict[str, tuple[str, ...]] = {
    "blues": ("Blues", "Delta Blues", "Chicago Blues", "Electric Blues", "Acoustic Blues", "Country Blues",
              "Texas Blues", "Piedmont Blues"),
    "classical": ("Classical", "Classic", "Baroque", "Romantic", "Romantic Classical", "Opera", "Orchestral",
                  "Symphony", "Symphonic", "Chamber Music", "Chamber", "Choral", "Early Music", "Renaissance",
                  "Contemporary Classical", "Modern Classical", "Neoclassical"),
    "country": ("Country", "Country & Western", "Country and Western", "Bluegrass", "Alt-Country", "Honky Tonk",
                "Outlaw Country", "Contemporary Country", "Country Pop", "Western Swing"),
    "disco": ("Disco", "Euro Disco", "Eurodisco", "Nu-Disco", "Italo Disco", "Post-Disco", "Disco Funk"),
    "hiphop": ("Hip-Hop", "Hip Hop", "Rap", "Hip-Hop/Rap", "Rap/Hip-Hop", "Gangsta Rap", "Gangsta", "Trap",
               "East Coast Rap", "West Coast Rap", "Hardcore Rap", "Underground Hip-Hop", "Alternative Hip-Hop",
               "Conscious Hip-Hop", "Boom Bap"),
    "jazz": ("Jazz", "Bebop", "Bop", "Hard Bop", "Post-Bop", "Cool Jazz", "Swing", "Big Band", "Smooth Jazz",
             "Acid Jazz", "Jazz Fusion", "Fusion", "Free Jazz", "Vocal Jazz", "Latin Jazz", "Modal Jazz",
             "Dixieland", "Ragtime", "Avant-Garde Jazz", "Jazz Funk"),
    "metal": ("Metal", "Heavy Metal", "Death Metal", "Black Metal", "Thrash Metal", "Speed Metal", "Power Metal",
              "Doom Metal", "Metalcore", "Nu Metal", "Progressive Metal", "Sludge Metal", "Grindcore",
              "Symphonic Metal", "Gothic Metal", "Glam Metal", "Hair Metal", "Industrial Metal", "Folk Metal"),
    "pop": ("Pop", "Dance Pop", "Synthpop", "Electropop", "Teen Pop", "Europop", "K-Pop", "J-Pop", "Indie Pop",
            "Adult Contemporary", "Bubblegum Pop", "Pop/Dance"),
    "reggae": ("Reggae", "Roots Reggae", "Dub", "Dancehall", "Ska", "Rocksteady", "Lovers Rock", "Ragga"),
    "rock": ("Rock", "Classic Rock", "Hard Rock", "Punk", "Punk Rock", "Alternative", "Alternative Rock",
             "Alt-Rock", "Indie Rock", "Indie", "Grunge", "Garage Rock", "Psychedelic Rock", "Progressive Rock",
             "Prog Rock", "Soft Rock", "Rock & Roll", "Rock and Roll", "Rock 'n' Roll", "Post-Punk",
             "Southern Rock", "Blues Rock", "Folk Rock", "Art Rock", "Stoner Rock", "Pop Punk", "Post-Rock",
             "Britpop", "Emo"),
}


class GenreMapError(ValueError):
    """A user mapping file that cannot be read; the message names the file and line."""


def label_key(value: str) -> str:
    """``value`` compared for case and spacing only: casefolded, runs of whitespace made one space."""
    return " ".join(value.split()).casefold()


def tidy(value: str) -> str:
    """``value`` with its whitespace collapsed (the spelling a label is shown with)."""
    return " ".join(value.split())


def spelling_key(value: str) -> str:
    """``value`` reduced to its lower-case letters and digits, the table's lookup key."""
    return "".join(c for c in value.casefold() if c.isalnum())


def values_of(tag: str) -> list[str]:
    """The values of a possibly multi-valued tag, tidied, empty ones dropped (``"Rock; Pop"`` -> two)."""
    return [tidy(v) for v in VALUE_SEPARATORS.split(tag) if v.strip()]


def first_value(tag: str) -> str | None:
    """The first value of a tag (what ``train --from-library`` labels a track with), or ``None``."""
    values = values_of(tag)
    return values[0] if values else None


@dataclass(frozen=True)
class GenreMap:
    """Spelling key to label; built from the default table and optionally a user file."""

    table: Mapping[str, str]

    def lookup(self, tag: str | None) -> str | None:
        """The label of a tag: the whole value first, else its first value that maps; ``None``: unmapped."""
        if not tag:
            return None
        whole = self.table.get(spelling_key(tag))
        if whole is not None:
            return whole
        for value in values_of(tag):
            label = self.table.get(spelling_key(value))
            if label is not None:
                return label
        return None

    def targets(self) -> set[str]:
        return set(self.table.values())


def default_table() -> dict[str, str]:
    return {spelling_key(s): genre for genre, spellings in DEFAULT_SPELLINGS.items() for s in (genre, *spellings)}


def parse_user_lines(lines: Iterable[str], source: str) -> dict[str, str | None]:
    """``spelling = label`` lines (``#`` comments, blank lines allowed); ``None`` removes a spelling."""
    entries: dict[str, str | None] = {}
    for number, line in enumerate(lines, 1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        spelling, sep, label = text.partition("=")
        if not sep or not spelling_key(spelling):
            raise GenreMapError(f"{source}:{number}: expected 'tag spelling = genre', got {line.strip()!r}")
        entries[spelling_key(spelling)] = tidy(label) or None
    return entries


def load_map(user_file: str | Path | None = None) -> GenreMap:
    """The default table, extended (and overridden) by ``user_file`` when given."""
    table: dict[str, str] = default_table()
    if user_file:
        path = Path(user_file).expanduser()
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise GenreMapError(f"{path}: cannot read the tag map ({exc})") from None
        for key, label in parse_user_lines(lines, str(path)).items():
            if label is None:
                table.pop(key, None)
            else:
                table[key] = label
    return GenreMap(table)
