"""English text normalization before G2P: what people type -> what a reader says.

Table-driven: ``RULES`` is an ordered list of (name, pattern, spoken form); each rule carries examples,
which the tests check one by one and docs/text.md lists. Rules run in order over the whole text, each on
the output of the previous ones (URLs and e-mail addresses first, so their dots are not read as sentence
ends; numbers in context before bare numbers). What no rule matches is left to misaki, which already reads
plain numbers, money and percentages.

British voices read dates day-first ("the fifth of March") and numbers with "and" ("one hundred and
five"); American voices month-first ("March fifth"), no "and". A slash date is read in the voice's order
unless only the other order is a valid date.

Everything here is linear in the input (no nested quantifiers) and total: any string comes out as a string.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from num2words import num2words

LONG_DIGITS = 16  # a digit run this long is read in groups of three digits (misaki's reading overflows)
# (a run with leading zeros, "007", is read digit by digit)
DIGITS = "zero one two three four five six seven eight nine".split()
MONTHS = ("January February March April May June July August September October November "
          "December").split()
_MONTH_ABBR = {m[:3].lower(): m for m in MONTHS} | {"sept": "September"}
_DAY_ABBR = {"mon": "Monday", "tue": "Tuesday", "tues": "Tuesday", "wed": "Wednesday", "thu": "Thursday",
             "thur": "Thursday", "thurs": "Thursday", "fri": "Friday", "sat": "Saturday", "sun": "Sunday"}

SYMBOLS = {".": "dot", "/": "slash", "-": "dash", "_": "underscore", ":": "colon", "@": "at",
           "?": "question mark",
           "=": "equals", "&": "and", "#": "hash", "~": "tilde", "%": "percent", "+": "plus"}
FILE_EXTENSIONS = {
    "txt": "text", "pdf": "P D F", "doc": "doc", "docx": "doc X", "xls": "X L S", "xlsx": "X L S X",
    "ppt": "P P T", "pptx": "P P T X", "csv": "C S V", "json": "Jason", "xml": "X M L", "yaml": "yammel",
    "yml": "Y M L", "md": "M D", "html": "H T M L", "htm": "H T M", "css": "C S S", "js": "J S", "ts": "T S",
    "py": "P Y", "sh": "S H", "exe": "E X E", "zip": "zip", "tar": "tar", "gz": "G Z", "jpg": "J P G",
    "jpeg": "J peg", "png": "P N G", "gif": "gif", "svg": "S V G", "mp3": "M P three", "mp4": "M P four",
    "wav": "wave", "flac": "flack", "ogg": "ogg", "log": "log", "ini": "I N I", "toml": "tommel",
    "conf": "conf", "cfg": "C F G", "iso": "I S O", "apk": "A P K", "dmg": "D M G", "rs": "R S", "go": "go",
}
TLDS = "com|org|net|io|dev|edu|gov|ai|app|co|uk|de|fr|eu|info|me|tv|us|ca|au|nl|ch|se|no|es|it|jp"

# unit -> (singular, plural); matched case-sensitively right after a number
UNITS = {
    "km": ("kilometer", "kilometers"), "m": ("meter", "meters"), "cm": ("centimeter", "centimeters"),
    "mm": ("millimeter", "millimeters"), "kg": ("kilogram", "kilograms"), "g": ("gram", "grams"),
    "mg": ("milligram", "milligrams"), "lb": ("pound", "pounds"), "lbs": ("pound", "pounds"),
    "oz": ("ounce", "ounces"), "mi": ("mile", "miles"), "ft": ("foot", "feet"), "yd": ("yard", "yards"),
    "mph": ("mile per hour", "miles per hour"), "km/h": ("kilometer per hour", "kilometers per hour"),
    "kph": ("kilometer per hour", "kilometers per hour"), "m/s": ("meter per second", "meters per second"),
    "ml": ("milliliter", "milliliters"), "mL": ("milliliter", "milliliters"), "L": ("liter", "liters"),
    "KB": ("kilobyte", "kilobytes"), "kB": ("kilobyte", "kilobytes"), "MB": ("megabyte", "megabytes"),
    "GB": ("gigabyte", "gigabytes"), "TB": ("terabyte", "terabytes"), "Hz": ("hertz", "hertz"),
    "kHz": ("kilohertz", "kilohertz"), "MHz": ("megahertz", "megahertz"), "GHz": ("gigahertz", "gigahertz"),
    "W": ("watt", "watts"), "kW": ("kilowatt", "kilowatts"), "kWh": ("kilowatt hour", "kilowatt hours"),
    "V": ("volt", "volts"), "mA": ("milliamp", "milliamps"), "ms": ("millisecond", "milliseconds"),
    "min": ("minute", "minutes"), "hr": ("hour", "hours"), "hrs": ("hour", "hours"),
    "°C": ("degree Celsius", "degrees Celsius"), "°F": ("degree Fahrenheit", "degrees Fahrenheit"),
    "ºC": ("degree Celsius", "degrees Celsius"), "ºF": ("degree Fahrenheit", "degrees Fahrenheit"),
    "°": ("degree", "degrees"), "%": ("percent", "percent"),
}
TITLES = {"mr": "Mister", "mrs": "Missus", "ms": "Miz", "prof": "Professor", "gen": "General",
          "capt": "Captain", "lt": "Lieutenant", "sgt": "Sergeant", "rev": "Reverend", "hon": "Honorable",
          "gov": "Governor", "sen": "Senator", "rep": "Representative", "pres": "President", "fr": "Father"}
PLACES = {"ave": "Avenue", "rd": "Road", "blvd": "Boulevard", "ln": "Lane", "hwy": "Highway",
          "pkwy": "Parkway", "sq": "Square", "ct": "Court", "mt": "Mount"}
WORDS = {"vs": "versus", "etc": "et cetera", "e.g": "for example", "i.e": "that is",
         "approx": "approximately",
         "dept": "department", "est": "established", "jr": "Junior", "sr": "Senior", "inc": "Incorporated",
         "ltd": "Limited", "corp": "Corporation"}
# a Roman numeral after these is a number ("World War Two"); after another capitalized name, a regnal
# ordinal ("Henry the Eighth")
ROMAN_CARDINAL = {"war", "chapter", "part", "volume", "vol", "act", "book", "phase", "type", "class", "level",
                  "stage", "section", "season", "episode", "round", "grade", "apollo", "rocky", "bowl"}
REGNAL_I = {"elizabeth", "charles", "james", "george", "henry", "edward", "william", "richard", "louis",
            "peter", "catherine", "mary", "john", "alexander", "frederick", "nicholas", "napoleon", "leo",
            "pius", "gregory", "innocent", "benedict", "paul", "philip", "victor", "ferdinand"}
ROMAN_EXCLUDE = {"malcolm"}


@dataclass(frozen=True)
class Rule:
    name: str
    pattern: re.Pattern[str]
    speak: Callable[[re.Match[str], bool], str]
    examples: tuple[tuple[str, str], ...]  # (input, expected output) for American English
    british_examples: tuple[tuple[str, str], ...] = ()


# --- spoken forms -------------------------------------------------------------------------------------


def cardinal(n: int, british: bool = False) -> str:
    words = num2words(n)
    return words if british else words.replace(" and ", " ")


def ordinal(n: int, british: bool = False) -> str:
    words = num2words(n, to="ordinal")
    return words if british else words.replace(" and ", " ")


def year(n: int, british: bool = False) -> str:
    if 2000 <= n <= 2009 or n % 1000 == 0:
        return cardinal(n, british)
    words = num2words(n, to="year")
    return words if british else words.replace(" and ", " ")


def digits(s: str, group: int = 0) -> str:
    """Digit by digit; with ``group``, in groups of that many digits separated by commas."""
    spoken = [DIGITS[int(c)] for c in s if c.isdigit()]
    if not group:
        return " ".join(spoken)
    return ", ".join(" ".join(spoken[i : i + group]) for i in range(0, len(spoken), group))


def _spell_parts(s: str) -> str:
    """A URL, e-mail address or file name: its words as words, its separators by name."""
    out = []
    for part in re.findall(r"[A-Za-z]+|\d+|[^A-Za-z\d]", s):
        if part.isdigit():
            out.append(digits(part) if len(part) > 4 else part)
        elif part.isalpha():
            out.append(" ".join(part.upper()) if part.lower() == "www" else part)
        elif part in SYMBOLS:
            out.append(SYMBOLS[part])
    return " ".join(out)


def _digit_tail(m: re.Match[str], british: bool) -> str:
    """A long digit run that no number rule took, in groups, set off from what touches it."""
    after = m.string[m.end() : m.end() + 1]
    return f" {digits(m.group(0), 3)}" + (" " if after.isalnum() else "")


def _sentence_end(m: re.Match[str]) -> str:
    """'.' when the abbreviation that matched also ended its sentence (end of text, or a capital next)."""
    rest = m.string[m.end() :]
    return "." if m.group(0).endswith(".") and (not rest.strip() or re.match(r"\s+[A-Z]", rest)) else ""


def _prev_word(m: re.Match[str]) -> str:
    before = m.string[max(0, m.start() - 40) : m.start()]
    found = re.search(r"(\S+)\s+$", before)
    return found.group(1) if found else ""


def _next_word(m: re.Match[str]) -> str:
    found = re.match(r"\s+(\S+)", m.string[m.end() : m.end() + 40])
    return found.group(1) if found else ""


def _capitalized(word: str) -> bool:
    return bool(re.match(r"[A-Z][a-z]", word))


# --- the rules ----------------------------------------------------------------------------------------


def _url(m: re.Match[str], british: bool) -> str:
    url = re.sub(r"^[A-Za-z]+://", "", m.group(0)).rstrip("/")
    return _spell_parts(url)


def _email(m: re.Match[str], british: bool) -> str:
    user, domain = m.group(0).split("@", 1)
    return f"{_spell_parts(user)} at {_spell_parts(domain)}"


def _file(m: re.Match[str], british: bool) -> str:
    return f"{_spell_parts(m.group(1))} dot {FILE_EXTENSIONS[m.group(2).lower()]}"


def _phone(m: re.Match[str], british: bool) -> str:
    groups = re.findall(r"\d+", m.group(0))
    spoken = ", ".join(digits(g) for g in groups)
    return ("plus " if m.group(0).lstrip().startswith("+") else "") + spoken


def _date(day: int, month: int, yr: str | None, british: bool) -> str:
    y = ""
    if yr is not None:
        n = int(yr)
        if len(yr) == 2:
            n += 2000 if n < 50 else 1900
        y = ", " + year(n, british)
    if british:
        return f"the {ordinal(day, True)} of {MONTHS[month - 1]}{y}"
    return f"{MONTHS[month - 1]} {ordinal(day)}{y}"


def _valid(day: int, month: int) -> bool:
    return 1 <= month <= 12 and 1 <= day <= 31


def _iso_date(m: re.Match[str], british: bool) -> str:
    yr, month, day = m.group(1), int(m.group(2)), int(m.group(3))
    return _date(day, month, yr, british) if _valid(day, month) else m.group(0).replace("-", " ")


def _slash_date(m: re.Match[str], british: bool) -> str:
    a, b, yr = int(m.group(1)), int(m.group(2)), m.group(3)
    day, month = (a, b) if british else (b, a)
    if not _valid(day, month):
        day, month = month, day
    if not _valid(day, month):
        return " slash ".join(m.group(0).split("/"))
    return _date(day, month, yr, british)


def _month(name: str) -> str:
    key = name.rstrip(".").lower()
    return _MONTH_ABBR.get(key[:4] if key.startswith("sept") else key[:3], name)


def _month_day(m: re.Match[str], british: bool) -> str:
    day = int(m.group(2))
    if not 1 <= day <= 31:
        return m.group(0)
    yr = f", {year(int(m.group(3)), british)}" if m.group(3) else ""
    return f"{_month(m.group(1))} {ordinal(day, british)}{yr}"


def _day_month(m: re.Match[str], british: bool) -> str:
    day = int(m.group(1))
    if not 1 <= day <= 31:
        return m.group(0)
    yr = f", {year(int(m.group(3)), british)}" if m.group(3) else ""
    return f"the {ordinal(day, british)} of {_month(m.group(2))}{yr}"


def _meridiem(s: str | None) -> str:
    return "" if not s else (" A M" if s.lower().startswith("a") else " P M")


def _time(m: re.Match[str], british: bool) -> str:
    h, mins, secs, mer = int(m.group(1)), int(m.group(2)), m.group(3), m.group(4)
    if h > 24 or mins > 59:
        return " ".join(m.group(0).split(":"))
    hour = cardinal(h)
    if mins == 0:
        spoken = f"{hour} o'clock" if mer or h <= 12 else f"{hour} hundred"
    elif mins < 10:
        spoken = f"{hour} oh {cardinal(mins)}"
    else:
        spoken = f"{hour} {cardinal(mins)}"
    if secs is not None:
        spoken += f" and {cardinal(int(secs))} second{'s' if int(secs) != 1 else ''}"
    end = "." if mer and mer.endswith(".") and _sentence_end(m) else ""
    return spoken + _meridiem(mer) + end


def _hour(m: re.Match[str], british: bool) -> str:
    h = int(m.group(1))
    if not 1 <= h <= 12:
        return m.group(0)
    end = "." if m.group(2).endswith(".") and _sentence_end(m) else ""
    return cardinal(h) + _meridiem(m.group(2)) + end


def _long_number(m: re.Match[str], british: bool) -> str:
    whole, frac = m.group(1).replace(",", ""), m.group(2)
    zeros = len(whole) > 1 and whole[0] == "0" and "," not in m.group(1)  # "007": misaki drops the zeros
    if len(whole) < LONG_DIGITS and (frac is None or len(frac) < LONG_DIGITS) and not zeros:
        return m.group(0)
    spoken = digits(whole, 3) if len(whole) >= LONG_DIGITS else digits(whole) if zeros else whole
    if frac is not None:
        spoken += " point " + digits(frac, 3)
    before, after = m.string[m.start() - 1 : m.start()], m.string[m.end() : m.end() + 1]
    return (" " if before.isalnum() else "") + spoken + (" " if after.isalnum() else "")


def _range(m: re.Match[str], british: bool) -> str:
    return f"{m.group(1)} to {m.group(2)}"


def _ordinal(m: re.Match[str], british: bool) -> str:
    return ordinal(int(m.group(1)), british)


def _unit(m: re.Match[str], british: bool) -> str:
    number, unit = m.group(1), m.group(2)
    one, many = UNITS[unit]
    return f"{number} {one if number == '1' else many}"


def _abbreviation(m: re.Match[str], british: bool) -> str:
    if m.group(3):
        return "number"
    word = m.group(1) or m.group(2)
    key = word.lower()
    prev, nxt = _prev_word(m), _next_word(m)
    place_before = bool(re.match(r"[A-Z][a-z]+$|\d+(st|nd|rd|th)?$", prev))
    name_after = _capitalized(nxt)
    if key in ("st", "dr"):
        title = name_after and not place_before or (name_after and not m.group(0).endswith("."))
        if title:
            return "Saint" if key == "st" else "Doctor"
        return ("Street" if key == "st" else "Drive") + _sentence_end(m)
    if key in TITLES:
        return TITLES[key]
    if key == "ft":
        return "Fort" if name_after else "feet" + _sentence_end(m)
    if key == "no":
        return "number"
    if key in PLACES:
        return PLACES[key] + _sentence_end(m)
    if key.rstrip(".") in _DAY_ABBR:
        return _DAY_ABBR[key.rstrip(".")] + _sentence_end(m)
    if key in _MONTH_ABBR or key == "sept":
        return _month(word) + _sentence_end(m)
    return WORDS[key] + _sentence_end(m)


_ROMAN = {"I": 1, "V": 5, "X": 10, "L": 50}


def roman_value(s: str) -> int | None:
    if not re.fullmatch(r"X{0,3}(IX|IV|V?I{0,3})", s) or not s:
        return None
    total = 0
    for i, c in enumerate(s):
        v = _ROMAN[c]
        total += -v if i + 1 < len(s) and _ROMAN[s[i + 1]] > v else v
    return total


def _roman(m: re.Match[str], british: bool) -> str:
    name, numeral = m.group(1), m.group(2)
    value = roman_value(numeral)
    key = name.lower()
    if value is None or key in ROMAN_EXCLUDE:
        return m.group(0)
    if key in ROMAN_CARDINAL:
        return f"{name} {cardinal(value, british)}"
    if len(numeral) == 1 and key not in REGNAL_I:  # "Then I", "Model X": not numerals
        return m.group(0)
    return f"{name} the {ordinal(value, british).capitalize()}"


# --- the table ----------------------------------------------------------------------------------------

_ABBR = (
    r"\b(St|Dr|Mrs|Mr|Ms|Prof|Gen|Capt|Lt|Sgt|Rev|Hon|Gov|Sen|Rep|Pres|Ft|Ave|Rd|Blvd|Ln|Hwy|Pkwy|Sq|Ct|Mt"
    r"|[Vv]s|[Ee]tc|e\.g|i\.e|[Aa]pprox|[Dd]ept|[Ee]st|Jr|Sr|Inc|Ltd|Corp"
    r"|Jan|Feb|Mar|Apr|Jun|Jul|Aug|Sept|Sep|Oct|Nov|Dec|Mon|Tues|Tue|Wed|Thurs|Thur|Thu|Fri|Sat|Sun)\."
    r"|\b(?:(St|Dr|Mrs|Mr|Ms|Prof)(?=\s+[A-Z][a-z])|(No)\.(?=\s*\d))"
)
_MONTHS_RE = (r"(January|February|March|April|May|June|July|August|September|October|November|December"
              r"|Jan\.?|Feb\.?|Mar\.?|Apr\.?|Jun\.?|Jul\.?|Aug\.?|Sept\.?|Sep\.?|Oct\.?|Nov\.?|Dec\.?)")
_MERIDIEM = r"([AaPp]\.[Mm]\.|[AaPp][Mm]\b)"
_UNITS_RE = "|".join(re.escape(u) for u in sorted(UNITS, key=len, reverse=True))


RULES: list[Rule] = [
    Rule("email", re.compile(r"(?<![\w.+-])[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b"), _email,
         (("Write to jane.doe@example.org today.", "Write to jane dot doe at example dot org today."),)),
    Rule("url", re.compile(r"(?<![\w.@/-])(?:(?:https?|ftp)://|www\.)[^\s<>\"']*[^\s<>\"'.,;:!?)\]]"
                           rf"|(?<![\w.@/-])[a-z0-9-]+(?:\.[a-z0-9-]+)*\.(?:{TLDS})\b"
                           r"(?:/[^\s<>\"']*[^\s<>\"'.,;:!?)\]])?"),
         _url,
         (("See https://example.com/docs today.", "See example dot com slash docs today."),
          ("Go to www.python.org now.", "Go to W W W dot python dot org now."),
          ("It is on github.com/kokoro-api.", "It is on github dot com slash kokoro dash api."))),
    Rule("file",
         re.compile(rf"(?<![\w.-])([\w-]+(?:\.[\w-]+)*)\.({'|'.join(FILE_EXTENSIONS)})\b", re.IGNORECASE),
         _file,
         (("Open report_final.pdf first.", "Open report underscore final dot P D F first."),
          ("Edit config.yaml and run main.py.", "Edit config dot yammel and run main dot P Y."))),
    Rule("phone", re.compile(r"(?<![\w+])(?:\+\d{1,3}[\s.-]?)?(?:\(\d{3}\)\s?|\d{3}[\s.-])\d{3}[\s.-]\d{4}\b"
                             r"|(?<![\w+])\+\d{1,3}(?:[\s.-]\d{2,5}){2,5}\b"),
         _phone,
         (("Call 555-123-4567 now.", "Call five five five, one two three, four five six seven now."),
          ("Call (555) 123-4567.", "Call five five five, one two three, four five six seven."),
          ("Dial +44 20 7946 0958.",
           "Dial plus four four, two zero, seven nine four six, zero nine five eight."))),
    Rule("date_iso", re.compile(r"\b(\d{4})-(\d{2})-(\d{2})\b"), _iso_date,
         (("It opened on 2024-03-15.", "It opened on March fifteenth, twenty twenty-four."),),
         (("It opened on 2024-03-15.", "It opened on the fifteenth of March, twenty twenty-four."),)),
    Rule("date_slash", re.compile(r"\b(\d{1,2})/(\d{1,2})/(\d{4}|\d{2})\b"), _slash_date,
         (("Due 04/07/2025.", "Due April seventh, twenty twenty-five."),
          ("Due 25/12/2025.", "Due December twenty-fifth, twenty twenty-five.")),
         (("Due 04/07/2025.", "Due the fourth of July, twenty twenty-five."),)),
    Rule("date_month_day", re.compile(rf"\b{_MONTHS_RE} (\d{{1,2}})(?:st|nd|rd|th)?\b(?:,? (\d{{4}})\b)?"),
         _month_day,
         (("Born on July 4, 1990.", "Born on July fourth, nineteen ninety."),
          ("Due Jan. 5.", "Due January fifth."))),
    Rule("date_day_month", re.compile(rf"\b(\d{{1,2}})(?:st|nd|rd|th)? {_MONTHS_RE}(?: (\d{{4}})\b)?"),
         _day_month,
         (("Due 5 March 2024.", "Due the fifth of March, twenty twenty-four."),)),
    Rule("time", re.compile(rf"\b(\d{{1,2}}):(\d{{2}})(?::(\d{{2}}))?(?:\s?{_MERIDIEM})?"), _time,
         (("Meet at 5:30.", "Meet at five thirty."), ("Meet at 5:05 pm.", "Meet at five oh five P M."),
          ("Lunch is at 12:00.", "Lunch is at twelve o'clock."),
          ("It left at 17:45.", "It left at seventeen forty-five."),
          ("Meet at 9:15 a.m. Then we go.", "Meet at nine fifteen A M. Then we go."))),
    Rule("hour", re.compile(rf"\b(\d{{1,2}})\s?{_MERIDIEM}"), _hour,
         (("Doors open at 7pm.", "Doors open at seven P M."), ("At 10 a.m. sharp.", "At ten A M sharp."))),
    Rule("digit_run", re.compile(r"(?<![\d.,])(\d{1,3}(?:,\d{3})+|\d+)(?:\.(\d+))?(?![\d,]|\.\d)"),
         _long_number,
         (("Code 12345678901234567890.", "Code one two three, four five six, seven eight nine, zero one two, "
           "three four five, six seven eight, nine zero."),
          ("Pi is 3.14159265358979323846.", "Pi is 3 point one four one, five nine two, six five three, "
           "five eight nine, seven nine three, two three eight, four six."),
          ("Key x12345678901234567.", "Key x one two three, four five six, seven eight nine, zero one two, "
           "three four five, six seven."), ("Only 123456789012345.", "Only 123456789012345."),
          ("Agent 007 and 00.", "Agent zero zero seven and zero zero."))),
    # what digit_run leaves (a run right after a dot or comma with no number before it: ".0000..."): a run
    # misaki cannot read is read in groups, wherever it stands
    Rule("digit_tail", re.compile(rf"\d{{{LONG_DIGITS},}}"), _digit_tail,
         ((".00000000000000001 left", ". zero zero zero, zero zero zero, zero zero zero, zero zero zero, "
           "zero zero zero, zero one left"),)),
    Rule("range", re.compile(r"(?<![\w.,/:-])(\d+(?:\.\d+)?)\s?[-–]\s?(\d+(?:\.\d+)?)(?![\w/:-]|\.\d)"),
         _range,
         (("They won 3-2 last night.", "They won 3 to 2 last night."),
          ("Read pages 10–20.", "Read pages 10 to 20."),
          ("It runs 5-10 km.", "It runs 5 to 10 kilometers."))),
    Rule("ordinal", re.compile(r"\b(\d+)(?:st|nd|rd|th)\b"), _ordinal,
         (("She came 1st and he came 22nd.", "She came first and he came twenty-second."),)),
    Rule("unit", re.compile(rf"(?<![\w.,])(\d+(?:[.,]\d+)*)\s?({_UNITS_RE})(?![\w/])"), _unit,
         (("It is 5 km away.", "It is 5 kilometers away."), ("It weighs 1 kg.", "It weighs 1 kilogram."),
          ("It is 21°C outside.", "It is 21 degrees Celsius outside."), ("Up 15%.", "Up 15 percent."),
          ("A 2.5 GHz chip.", "A 2.5 gigahertz chip."), ("Drive 60 mph.", "Drive 60 miles per hour."))),
    Rule("abbreviation", re.compile(_ABBR), _abbreviation,
         (("I live on Elm St. near the park.", "I live on Elm Street near the park."),
          ("We visited St. Louis.", "We visited Saint Louis."),
          ("Dr. Smith lives on Oak Dr.", "Doctor Smith lives on Oak Drive."),
          ("Mr. and Mrs. Jones came.", "Mister and Missus Jones came."),
          ("Meet Mon. at noon.", "Meet Monday at noon."),
          ("Ask Prof. Lee, etc. now.", "Ask Professor Lee, et cetera now."),
          ("Take the 5th Ave. bus.", "Take the fifth Avenue bus."),
          ("It ended in Jan. We left.", "It ended in January. We left."), ("Room No. 5.", "Room number 5."))),
    Rule("roman", re.compile(r"\b([A-Z][a-z]+) ([IVX]+)\b"), _roman,
         (("Henry VIII had six wives.", "Henry the Eighth had six wives."),
          ("World War II ended.", "World War two ended."),
          ("Elizabeth I ruled.", "Elizabeth the First ruled."),
          ("Read Chapter IV.", "Read Chapter four."), ("Then I left.", "Then I left."),
          ("Malcolm X spoke.", "Malcolm X spoke."), ("The Model X is fast.", "The Model X is fast."))),
]


# Applied even with ``normalize: false``: misaki cannot read these digit runs (its number reading overflows
# on long ones and drops leading zeros: "00" would be silence).
SAFETY_RULES = [r for r in RULES if r.name in ("digit_run", "digit_tail")]


@dataclass(frozen=True)
class Normalized:
    """The spoken text, and how its words line up with the words as written: ``groups`` lists, in order,
    (words as written, how many spoken words say them), e.g. (("3:30pm!",), 4) for "three thirty P M!"."""

    text: str
    groups: tuple[tuple[tuple[str, ...], int], ...]


def normalize_aligned(text: str, british: bool = False, rules: list[Rule] | None = None) -> Normalized:
    """Apply ``rules`` (default: RULES) in order, tracking for every output character the span of input it
    came from."""
    lo, hi = list(range(len(text))), list(range(1, len(text) + 1))  # input span of each output character
    cur = text
    for rule in RULES if rules is None else rules:
        pieces: list[str] = []
        nlo: list[int] = []
        nhi: list[int] = []
        last = 0
        for m in rule.pattern.finditer(cur):
            spoken = rule.speak(m, british)
            s, e = m.span()
            if spoken == m.group(0) or e == s:
                continue
            pieces.append(cur[last:s])
            nlo += lo[last:s]
            nhi += hi[last:s]
            pieces.append(spoken)
            nlo += [lo[s]] * len(spoken)
            nhi += [hi[e - 1]] * len(spoken)
            last = e
        if pieces:
            pieces.append(cur[last:])
            lo, hi = nlo + lo[last:], nhi + hi[last:]
            cur = "".join(pieces)
    return Normalized(cur, _align(text, cur, lo, hi))


def _align(text: str, spoken: str, lo: list[int], hi: list[int]) -> tuple[tuple[tuple[str, ...], int], ...]:
    written = [(m.start(), m.end(), m.group()) for m in re.finditer(r"\S+", text)]
    groups: list[tuple[tuple[str, ...], int]] = []
    first = last = -1  # the written words of the group being built
    count = 0
    i = 0
    for m in re.finditer(r"\S+", spoken):
        a, b = lo[m.start()], hi[m.end() - 1]
        while i < len(written) - 1 and written[i][1] <= a:
            i += 1
        j = i
        while j < len(written) - 1 and written[j + 1][0] < b:
            j += 1
        if count and i <= last:
            last, count = max(last, j), count + 1
            continue
        if count:
            groups.append((tuple(w[2] for w in written[first : last + 1]), count))
        groups.extend(((w[2],), 0) for w in written[last + 1 : i])  # written words nothing says
        first, last, count = max(i, last + 1), max(j, last + 1), 1
    if count:
        groups.append((tuple(w[2] for w in written[first : last + 1]), count))
    groups.extend(((w[2],), 0) for w in written[last + 1 :])
    return tuple(groups)


def normalize(text: str, british: bool = False) -> str:
    """What people type -> words a reader would say (see RULES)."""
    return normalize_aligned(text, british).text
