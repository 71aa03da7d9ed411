"""The merchant master CSV, read and checked row by row before anything is stored.

Header: `merchant_id,payment_method,master_id[,master_name,is_marketplace,category]` (any order; a
UTF-8 byte order mark is allowed). One row maps a merchant ID, optionally for one payment method (empty
= any method), to a master; the master's name, marketplace flag and category are taken from the rows
that give them (empty = leave as it is, or the default for a new master).

`merchant_csv_parse` reads the whole file and names every problem by file line and column: text that is
not UTF-8, records the csv module cannot read (a field longer than FIELD_LIMIT characters, a quote
left open), a wrong number of fields, NUL characters (PostgreSQL text cannot hold them), values longer
than the model's max_length, an empty merchant_id or master_id, an is_marketplace outside the accepted
spellings, the same (merchant_id, payment_method) twice, and one master given two different names,
flags or categories. It touches no database; the caller stores nothing unless `problems` is empty.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field

from django.utils.translation import gettext, ngettext

from mercari_ops.common.errors import ValidationFailed

from ..models import MerchantAlias, MerchantMaster

MERCHANT_CSV_COLUMNS = ("merchant_id", "payment_method", "master_id", "master_name", "is_marketplace", "category")
REQUIRED_COLUMNS = ("merchant_id", "master_id")
# The column's model field, whose max_length bounds it.
_COLUMN_FIELDS = {
    "merchant_id": MerchantAlias._meta.get_field("merchant_id"),
    "payment_method": MerchantAlias._meta.get_field("payment_method"),
    "master_id": MerchantMaster._meta.get_field("master_id"),
    "master_name": MerchantMaster._meta.get_field("name"),
    "category": MerchantMaster._meta.get_field("category"),
}
# is_marketplace, compared case-insensitively after trimming; empty means "not given".
TRUE_SPELLINGS = ("1", "true", "yes", "y")
FALSE_SPELLINGS = ("0", "false", "no", "n")
# csv.field_size_limit for this reader: far above the longest valid value (200 characters), far below
# a field that would make the reader hold megabytes. A longer field is a csv.Error, reported by line.
# The limit is process-wide in the csv module; this project reads no other CSV.
FIELD_LIMIT = 4096
# The biggest upload accepted (a million rows of typical length fit).
MAX_FILE_BYTES = 64 * 1024 * 1024
# Problems kept for display (all are counted).
PROBLEMS_KEPT = 100
_SHOWN_CHARACTERS = 40


@dataclass(frozen=True)
class CsvProblem:
    line: int
    column: str | None
    message: str

    def __str__(self) -> str:
        if self.column:
            return gettext("line %(line)s, column %(column)s: %(message)s") % {
                "line": self.line, "column": self.column, "message": self.message}
        return gettext("line %(line)s: %(message)s") % {"line": self.line, "message": self.message}

    def as_dict(self) -> dict:
        return {"line": self.line, "column": self.column, "message": self.message}


@dataclass(frozen=True)
class MerchantRow:
    line: int
    merchant_id: str
    payment_method: str
    master_id: str
    name: str | None
    is_marketplace: bool | None
    category: str | None


@dataclass
class MerchantCsv:
    rows: list[MerchantRow] = field(default_factory=list)
    problems: list[CsvProblem] = field(default_factory=list)
    problem_count: int = 0

    @property
    def valid(self) -> bool:
        return self.problem_count == 0

    def problem(self, line: int, column: str | None, message: str) -> None:
        self.problem_count += 1
        if len(self.problems) < PROBLEMS_KEPT:
            self.problems.append(CsvProblem(line, column, message))


class MerchantCsvInvalid(ValidationFailed):
    """The file has problems; nothing was stored. `problems` holds the first PROBLEMS_KEPT."""

    def __init__(self, parsed: MerchantCsv):
        first = parsed.problems[0]
        more = parsed.problem_count - 1
        suffix = " " + ngettext("(and %(n)d more problem)", "(and %(n)d more problems)", more) % {"n": more} \
            if more else ""
        super().__init__(f"{first}{suffix}", first.column)
        self.problems = parsed.problems
        self.problem_count = parsed.problem_count


def _shown(value: str) -> str:
    return repr(value if len(value) <= _SHOWN_CHARACTERS else value[:_SHOWN_CHARACTERS] + "...")


def _text(data: bytes | str, parsed: MerchantCsv) -> str:
    """The file as text; each line that is not UTF-8 is a problem (and is read with replacements)."""
    if isinstance(data, str):
        # Lone surrogates cannot be stored; as bytes they are invalid UTF-8 and reported below.
        data = data.encode("utf-8", "surrogatepass")
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    lines = []
    for number, raw in enumerate(data.split(b"\n"), start=1):
        try:
            lines.append(raw.decode("utf-8"))
        except UnicodeDecodeError as exc:
            parsed.problem(number, None, gettext("not UTF-8 text (byte %(byte)s at position %(position)s of the "
                                                 "line)") % {"byte": f"0x{raw[exc.start]:02x}",
                                                             "position": exc.start + 1})
            lines.append(raw.decode("utf-8", "replace"))
    return "\n".join(lines)


def _records(text: str, parsed: MerchantCsv):
    """(first file line, fields) of each non-blank record; unreadable records become problems."""
    csv.field_size_limit(FIELD_LIMIT)
    reader = csv.reader(io.StringIO(text))
    while True:
        start = reader.line_num + 1
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            parsed.problem(start, None, gettext("not readable as CSV (%(error)s; fields are limited to %(limit)s "
                                                "characters)") % {"error": exc, "limit": FIELD_LIMIT})
            continue
        if fields:
            yield start, fields


def _header_check(header: list[str], line: int, parsed: MerchantCsv) -> None:
    for required in REQUIRED_COLUMNS:
        if required not in header:
            parsed.problem(line, required, gettext("CSV header must contain %(column)s") % {"column": required})
    seen = set()
    for name in header:
        if name not in MERCHANT_CSV_COLUMNS:
            parsed.problem(line, name[:64] or None,
                           gettext("unknown CSV column %(column)s; allowed: %(allowed)s")
                           % {"column": _shown(name), "allowed": ", ".join(MERCHANT_CSV_COLUMNS)})
        elif name in seen:
            parsed.problem(line, name, gettext("column %(column)s appears twice in the header") % {"column": name})
        seen.add(name)


def _value(raw: str, column: str, line: int, parsed: MerchantCsv) -> str | None:
    """The trimmed value, or None after reporting a problem."""
    if "\x00" in raw:
        parsed.problem(line, column, gettext("contains a NUL character (U+0000)"))
        return None
    value = raw.strip()
    model_field = _COLUMN_FIELDS.get(column)
    if model_field is not None and len(value) > model_field.max_length:
        parsed.problem(line, column, gettext("is %(length)s characters long; at most %(max)s allowed")
                       % {"length": len(value), "max": model_field.max_length})
        return None
    if column in REQUIRED_COLUMNS and not value:
        parsed.problem(line, column, gettext("is empty"))
        return None
    return value


def _flag(value: str, line: int, parsed: MerchantCsv) -> tuple[bool, bool | None]:
    """(ok, flag): flag None when the cell is empty."""
    spelled = value.lower()
    if spelled in TRUE_SPELLINGS:
        return True, True
    if spelled in FALSE_SPELLINGS:
        return True, False
    if not spelled:
        return True, None
    parsed.problem(line, "is_marketplace", gettext("%(value)s is not a yes/no value; use one of %(yes)s or %(no)s")
                   % {"value": _shown(value), "yes": "/".join(TRUE_SPELLINGS), "no": "/".join(FALSE_SPELLINGS)})
    return False, None


def merchant_csv_parse(data: bytes | str) -> MerchantCsv:
    """Read and check the whole file; `rows` are the valid rows, `problems` every problem found."""
    parsed = MerchantCsv()
    records = _records(_text(data, parsed), parsed)
    first = next(records, None)
    if first is None:
        if not parsed.problem_count:
            parsed.problem(1, None, gettext("the file is empty; expected the header %(header)s")
                           % {"header": ",".join(MERCHANT_CSV_COLUMNS)})
        return parsed
    header_line, header = first[0], [name.strip() for name in first[1]]
    _header_check(header, header_line, parsed)
    if parsed.problem_count:
        return parsed
    aliases: dict[tuple[str, str], int] = {}
    masters: dict[str, dict[str, tuple[object, int]]] = {}
    for line, fields in records:
        if len(fields) != len(header):
            parsed.problem(line, None, gettext("has %(fields)s fields; the header has %(header)s")
                           % {"fields": len(fields), "header": len(header)})
            continue
        values = {column: _value(raw, column, line, parsed) for column, raw in zip(header, fields, strict=True)}
        if any(value is None for value in values.values()):
            continue
        ok, flag = _flag(values.get("is_marketplace", ""), line, parsed)
        if not ok:
            continue
        row = MerchantRow(line=line, merchant_id=values["merchant_id"],
                          payment_method=values.get("payment_method", ""), master_id=values["master_id"],
                          name=values.get("master_name") or None, is_marketplace=flag,
                          category=values.get("category") or None)
        key = (row.merchant_id, row.payment_method)
        if key in aliases:
            parsed.problem(line, "merchant_id", gettext(
                "merchant_id %(merchant)s with payment_method %(method)s is on line %(first)s and line %(line)s") % {
                "merchant": _shown(row.merchant_id), "method": _shown(row.payment_method), "first": aliases[key],
                "line": line})
            continue
        aliases[key] = line
        given = masters.setdefault(row.master_id, {})
        conflict = False
        for column, value in (("master_name", row.name), ("is_marketplace", row.is_marketplace),
                              ("category", row.category)):
            if value is None:
                continue
            earlier = given.setdefault(column, (value, line))
            if earlier[0] != value:
                parsed.problem(line, column, gettext(
                    "%(column)s %(value)s for master_id %(master)s differs from %(earlier)s on line %(line)s") % {
                    "column": column, "value": _shown(str(value)), "master": _shown(row.master_id),
                    "earlier": _shown(str(earlier[0])), "line": earlier[1]})
                conflict = True
        if not conflict:
            parsed.rows.append(row)
    return parsed
