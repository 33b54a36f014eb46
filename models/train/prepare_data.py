#!/usr/bin/env python3
"""Builds the training corpus of Horizon's default model (models/horizon-kjv) from Debian's KJV packages.

Source: the King James Version (1611; public domain) of Debian's `bible-kjv-text` package. The package stores the
text compressed in /usr/lib/bible.data, a format of its own, so it is read back with the package's own reader,
`bible` (package `bible-kjv`, which `bible-kjv-text` recommends):

    apt-get install -y bible-kjv-text bible-kjv
    python3 models/train/prepare_data.py            # writes models/train/data/ (git-ignored)

Output (UTF-8, LF line ends), one chapter per block, blocks separated by one empty line; a block is the chapter's
heading ("Genesis 1") on its first line and then one verse per line, without verse numbers:

    data/kjv.txt     every chapter, in canonical order (1,189 chapters, 31,102 verses)
    data/train.txt   the training chapters
    data/valid.txt   every 50th chapter starting at the 25th (global index i with i % 50 == 24): model selection
    data/test.txt    every 50th chapter (i % 50 == 49): the held-out set whose perplexity is reported
    data/split.json  the chapter lists of each part and the counts

The split is by whole chapters (no verse of a held-out chapter is seen in training) and is deterministic: it depends
only on the chapter's position in the canon. Plain Python 3.11 standard library; no network.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

# The reader's book abbreviations (as `bible -f` prints them) in canonical order, with the names of the 1611
# edition's running heads as used by modern KJV printings.
BOOKS = [
    ("Ge", "Genesis"), ("Exo", "Exodus"), ("Lev", "Leviticus"), ("Num", "Numbers"), ("Deu", "Deuteronomy"),
    ("Josh", "Joshua"), ("Jdgs", "Judges"), ("Ruth", "Ruth"), ("1Sm", "1 Samuel"), ("2Sm", "2 Samuel"),
    ("1Ki", "1 Kings"), ("2Ki", "2 Kings"), ("1Chr", "1 Chronicles"), ("2Chr", "2 Chronicles"), ("Ezra", "Ezra"),
    ("Neh", "Nehemiah"), ("Est", "Esther"), ("Job", "Job"), ("Psa", "Psalms"), ("Prv", "Proverbs"),
    ("Eccl", "Ecclesiastes"), ("SSol", "Song of Solomon"), ("Isa", "Isaiah"), ("Jer", "Jeremiah"),
    ("Lam", "Lamentations"), ("Eze", "Ezekiel"), ("Dan", "Daniel"), ("Hos", "Hosea"), ("Joel", "Joel"),
    ("Amos", "Amos"), ("Obad", "Obadiah"), ("Jonah", "Jonah"), ("Mic", "Micah"), ("Nahum", "Nahum"),
    ("Hab", "Habakkuk"), ("Zep", "Zephaniah"), ("Hag", "Haggai"), ("Zec", "Zechariah"), ("Mal", "Malachi"),
    ("Mat", "Matthew"), ("Mark", "Mark"), ("Luke", "Luke"), ("John", "John"), ("Acts", "Acts"),
    ("Rom", "Romans"), ("1Cor", "1 Corinthians"), ("2Cor", "2 Corinthians"), ("Gal", "Galatians"),
    ("Eph", "Ephesians"), ("Phi", "Philippians"), ("Col", "Colossians"), ("1Th", "1 Thessalonians"),
    ("2Th", "2 Thessalonians"), ("1Tim", "1 Timothy"), ("2Tim", "2 Timothy"), ("Titus", "Titus"),
    ("Phmn", "Philemon"), ("Heb", "Hebrews"), ("Jas", "James"), ("1Pet", "1 Peter"), ("2Pet", "2 Peter"),
    ("1Jn", "1 John"), ("2Jn", "2 John"), ("3Jn", "3 John"), ("Jude", "Jude"), ("Rev", "Revelation"),
]
EXPECTED_VERSES = 31102
EXPECTED_CHAPTERS = 1189
REFERENCE = re.compile(r"^([1-3]?[A-Za-z]+)(\d+):(\d+)$")


def read_verses(bible: str, data_dir: str | None) -> list[tuple[str, int, int, str]]:
    """(book abbreviation, chapter, verse, text) for every verse, from `bible -f` (one verse a line, no wrapping)."""
    command = [bible, "-f"]
    if data_dir:
        command += ["-p", data_dir]
    command.append("Gen1:1-Rev22:21")
    raw = subprocess.run(command, check=True, capture_output=True, stdin=subprocess.DEVNULL).stdout
    text = raw.decode("ascii")  # the package's text is plain ASCII; anything else is an error worth seeing
    verses = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        reference, _, body = line.partition(" ")
        match = REFERENCE.match(reference)
        if not match:
            raise SystemExit(f"bible output line {number}: cannot read the reference in {line[:60]!r}")
        verses.append((match.group(1), int(match.group(2)), int(match.group(3)), body))
    return verses


def clean(text: str) -> str:
    """One verse as one line: runs of white space (two verses have a double space after a full stop) become one."""
    return " ".join(text.split())


def chapters_of(verses) -> list[dict]:
    names = dict(BOOKS)
    order = {abbrev: i for i, (abbrev, _) in enumerate(BOOKS)}
    chapters: list[dict] = []
    for abbrev, chapter, verse, body in verses:
        if abbrev not in names:
            raise SystemExit(f"unknown book abbreviation {abbrev!r} in the bible output")
        if not chapters or chapters[-1]["abbrev"] != abbrev or chapters[-1]["chapter"] != chapter:
            chapters.append({"abbrev": abbrev, "book": names[abbrev], "chapter": chapter, "verses": []})
        current = chapters[-1]
        if verse != len(current["verses"]) + 1:
            raise SystemExit(f"{abbrev}{chapter}:{verse}: verses out of order")
        current["verses"].append(clean(body))
    books_seen = [c["abbrev"] for c in chapters if c["chapter"] == 1]
    if books_seen != [b for b, _ in BOOKS] or sorted(books_seen, key=order.get) != books_seen:
        raise SystemExit("the bible output does not hold the 66 books in canonical order")
    return chapters


def block(chapter: dict) -> str:
    return "\n".join([f"{chapter['book']} {chapter['chapter']}"] + chapter["verses"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "data"), help="output folder (default: models/train/data)")
    parser.add_argument("--bible", default="bible", help="the reader of package bible-kjv (default: bible on PATH)")
    parser.add_argument("--data-dir", default=None, help="folder of bible.data (default: the reader's own search path, /usr/lib)")
    parser.add_argument("--every", type=int, default=50, help="hold out one chapter in EVERY for test and one for validation (default 50)")
    args = parser.parse_args()

    if shutil.which(args.bible) is None:
        print("error: the `bible` reader is missing: apt-get install -y bible-kjv-text bible-kjv", file=sys.stderr)
        return 1
    verses = read_verses(args.bible, args.data_dir)
    if len(verses) != EXPECTED_VERSES:
        raise SystemExit(f"expected {EXPECTED_VERSES} verses, got {len(verses)}")
    chapters = chapters_of(verses)
    if len(chapters) != EXPECTED_CHAPTERS:
        raise SystemExit(f"expected {EXPECTED_CHAPTERS} chapters, got {len(chapters)}")

    parts: dict[str, list[int]] = {"train": [], "valid": [], "test": []}
    for i in range(len(chapters)):
        r = i % args.every
        parts["test" if r == args.every - 1 else "valid" if r == args.every // 2 - 1 else "train"].append(i)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    blocks = [block(c) for c in chapters]
    summary: dict = {"source": "Debian bible-kjv-text (King James Version, public domain), read with `bible -f Gen1:1-Rev22:21`",
                     "format": "chapters separated by one empty line; a chapter is its heading line, then one verse per line",
                     "every": args.every, "parts": {}}
    for name, indices in [("kjv", list(range(len(chapters))))] + list(parts.items()):
        text = "\n\n".join(blocks[i] for i in indices) + "\n"
        data = text.encode("utf-8")
        (out / f"{name}.txt").write_bytes(data)
        summary["parts"][name] = {
            "chapters": len(indices),
            "verses": sum(len(chapters[i]["verses"]) for i in indices),
            "bytes": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
            "list": [f"{chapters[i]['book']} {chapters[i]['chapter']}" for i in indices] if name in ("valid", "test") else None,
        }
        print(f"{name:5s}: {len(indices):4d} chapters, {summary['parts'][name]['verses']:5d} verses, {len(data):8d} bytes")
    (out / "split.json").write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
