"""Schema diff: two snapshots in, a list of classified changes out. Pure: no I/O.

`diff_snapshots(old, new)` finds what changed, one change per fact, each with a `kind` from the
vocabulary in docs/detection.md. `classify(changes, strict=...)` adds the class (safe /
review), the reason, the impact on Zod / MongoDB / API / UI / Tests following the seed's
change impact matrix, the summary line in the seed's words and the stable id that decisions
are keyed by. `detect_changes` does both.

A removed and an added column (or table) that look alike are reported as a rename *candidate*
with its evidence, never silently as a drop plus an add: whether it is a rename is a decision.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any, Iterable

from etl.core.hashing import canonical_json

Change = dict[str, Any]
Snapshot = dict[str, Any]

# --- the impact matrix -------------------------------------------------------------------
# The first five rows are the seed's matrix word for word; the others extend it to the kinds
# the seed does not list, in the same vocabulary (docs/detection.md explains each choice).
IMPACT_ROWS: dict[str, tuple[str, dict[str, str]]] = {
    "new_optional_field": ("New Optional Field", dict(zod="auto", mongodb="auto", api="auto", ui="review", tests="update")),
    "new_required_field": ("New Required Field", dict(zod="review", mongodb="review", api="breaking", ui="breaking", tests="update")),
    "type_change": ("Type Change", dict(zod="review", mongodb="migration", api="review", ui="review", tests="update")),
    "field_rename": ("Field Rename", dict(zod="review", mongodb="migration", api="breaking", ui="breaking", tests="update")),
    "new_relationship": ("New Relationship", dict(zod="auto", mongodb="index", api="review", ui="review", tests="update")),
    "new_table": ("New Table", dict(zod="auto", mongodb="auto", api="auto", ui="review", tests="update")),
    "dropped": ("Dropped Field/Table", dict(zod="review", mongodb="migration", api="breaking", ui="breaking", tests="update")),
    "relationship_change": ("Relationship Change", dict(zod="review", mongodb="index", api="review", ui="review", tests="update")),
    "key_change": ("Primary Key Change", dict(zod="review", mongodb="migration", api="breaking", ui="review", tests="update")),
    "index": ("Index Change", dict(zod="none", mongodb="index", api="none", ui="none", tests="none")),
    "breaking_constraint": ("Breaking Constraint", dict(zod="review", mongodb="review", api="review", ui="review", tests="update")),
    "relaxed_constraint": ("Non-breaking Constraint", dict(zod="auto", mongodb="auto", api="review", ui="review", tests="update")),
    "default_change": ("Default Change", dict(zod="auto", mongodb="none", api="none", ui="none", tests="none")),
    "enum_value_added": ("Enum Value Added", dict(zod="auto", mongodb="auto", api="auto", ui="review", tests="update")),
    "enum_value_removed": ("Enum Value Removed", dict(zod="review", mongodb="migration", api="breaking", ui="review", tests="update")),
    "no_data_impact": ("No Data Impact", dict(zod="none", mongodb="none", api="none", ui="none", tests="none")),
}
IMPACT_WORDS = {"auto": "✓ Auto", "review": "Review", "migration": "Migration", "breaking": "Breaking",
                "update": "Update", "index": "Index", "none": "—"}

KINDS = (
    "table_added", "table_removed", "table_renamed",
    "column_added", "column_removed", "column_renamed", "column_type_changed",
    "column_nullability_changed", "column_default_changed",
    "primary_key_changed", "foreign_key_added", "foreign_key_removed",
    "index_added", "index_removed", "unique_added", "unique_removed", "check_added", "check_removed",
    "enum_value_added", "enum_value_removed", "domain_changed",
    "partition_added", "partition_removed", "view_added", "view_removed", "comment_changed",
)

# --- types -------------------------------------------------------------------------------
# The families are the types the design's default mapping knows; anything else is "unknown"
# and is reported by name rather than guessed at.
_NUMBER = {"smallint", "integer", "bigint", "numeric", "real", "double precision", "money"}
_STRING = {"text", "character varying", "character", "citext", "name", "uuid", "inet", "cidr", "macaddr",
           "macaddr8", "time without time zone", "time with time zone", "interval", '"char"'}
_DATE = {"date", "timestamp without time zone", "timestamp with time zone"}
_FAMILY = {**{t: "number" for t in _NUMBER}, **{t: "string" for t in _STRING},
           **{t: "date" for t in _DATE}, "boolean": "boolean", "json": "object", "jsonb": "object",
           "bytea": "binary"}
_INT_RANK = {"smallint": 1, "integer": 2, "bigint": 3}
_INT_DIGITS = {"smallint": 5, "integer": 10, "bigint": 19}
_FLOAT_EXACT_INTS = {"real": {"smallint"}, "double precision": {"smallint", "integer"}}
_TYPE_RE = re.compile(r"^(?P<pre>[^()]*?)\s*(?:\((?P<args>[\d,\s]+)\))?(?P<post>[^()]*)$")


def parse_type(type_name: str) -> tuple[str, tuple[int, ...], int]:
    """`format_type()` text → (name without modifiers, modifiers, array dimensions).
    'character varying(20)[]' → ('character varying', (20,), 1)."""
    text, dims = type_name.strip(), 0
    while text.endswith("[]"):
        text, dims = text[:-2], dims + 1
    match = _TYPE_RE.match(text)
    if not match:
        return text, (), dims
    name = " ".join(f"{match['pre']} {match['post']}".split())
    args = tuple(int(a) for a in match["args"].split(",")) if match["args"] else ()
    return name, args, dims


def _bare(name: str) -> str:
    """Extension types come schema-qualified (public.citext); the family table uses the bare name."""
    return name.rsplit(".", 1)[-1] if "." in name and not name.startswith('"') else name


def resolve_type(column: dict[str, Any], snap: Snapshot) -> str:
    """The column's type with domains replaced by their base type (recursively)."""
    type_name = column["type"]
    for _ in range(8):  # domains over domains, bounded
        name, args, dims = parse_type(type_name)
        domain = snap.get("domains", {}).get(name)
        if domain is None:
            return type_name
        type_name = domain["base_type"] + "[]" * dims
    return type_name


def type_family(column: dict[str, Any], snap: Snapshot) -> str:
    """The seed's word for a column's type: number, string, boolean, date, object, binary,
    enum, X[] for arrays, or 'unknown type <name>'."""
    name, _, dims = parse_type(resolve_type(column, snap))
    if name in snap.get("enums", {}):
        family = "enum"
    elif name in _FAMILY or _bare(name) in _FAMILY:
        family = _FAMILY.get(name) or _FAMILY[_bare(name)]
    elif column.get("type_kind") == "composite" or (column.get("element_kind") == "composite"):
        family = "object"
    else:
        return f"unknown type {name}" + "[]" * dims
    return family + "[]" * dims


def is_unknown(family: str) -> bool:
    return family.startswith("unknown type ")


def _widens(a: str, b: str, snap_a: Snapshot, snap_b: Snapshot) -> bool:
    """Every value of type `a` is a value of type `b` with nothing lost."""
    (na, aa, da), (nb, ab, db) = parse_type(a), parse_type(b)
    na, nb = _bare(na), _bare(nb)
    if da != db:
        return False
    if (na, aa) == (nb, ab):
        return True
    if na in _INT_RANK and nb in _INT_RANK:
        return _INT_RANK[na] <= _INT_RANK[nb]
    if na in _INT_RANK and nb == "numeric":
        return not ab or ab[0] - (ab[1] if len(ab) > 1 else 0) >= _INT_DIGITS[na]
    if na in _INT_RANK and nb in _FLOAT_EXACT_INTS:
        return na in _FLOAT_EXACT_INTS[nb]
    if na == "real" and nb == "double precision":
        return True
    if na == nb == "numeric":
        if not ab:
            return True
        if not aa:
            return False
        pa, sa = aa[0], aa[1] if len(aa) > 1 else 0
        pb, sb = ab[0], ab[1] if len(ab) > 1 else 0
        return sb >= sa and pb - sb >= pa - sa
    strings = ("character varying", "character", "text", "citext")
    if na in strings and nb in strings:
        if nb in ("text", "citext") or (nb == "character varying" and not ab):
            return na != "citext" or nb == "citext"
        if na in ("text", "citext") or not aa:
            return False
        # into char(n) values get padded with spaces, which reads back differently: not a widening
        return (nb == "character varying" or na == nb == "character") and ab[0] >= aa[0]
    if na in snap_a.get("enums", {}) and nb in ("text", "citext") or (
            na in snap_a.get("enums", {}) and nb == "character varying" and not ab):
        return True
    if na in snap_a.get("enums", {}) and na == nb:
        return set(snap_a["enums"][na]) <= set(snap_b.get("enums", {}).get(nb, []))
    timestamps = {"timestamp without time zone": 1, "timestamp with time zone": 2}
    if na in timestamps and nb in timestamps:
        return timestamps[na] <= timestamps[nb] and (ab[0] if ab else 6) >= (aa[0] if aa else 6)
    if na == "date" and nb in timestamps:
        return True
    if na == nb and na in ("time without time zone", "time with time zone", "interval"):
        return (ab[0] if ab else 6) >= (aa[0] if aa else 6)
    return False


def type_change_direction(old_col: dict, new_col: dict, old: Snapshot, new: Snapshot) -> str:
    """widening (nothing can be lost), narrowing (the reverse of a widening), lossy (another
    type: values may not convert), or unknown (a type the tool does not know)."""
    if is_unknown(type_family(old_col, old)) or is_unknown(type_family(new_col, new)):
        return "unknown"
    a, b = resolve_type(old_col, old), resolve_type(new_col, new)
    if _widens(a, b, old, new):
        if a == b:  # a domain was added, removed or swapped: compare what each one allows
            return "widening" if _domain_allows(old_col, old, new_col, new) else "narrowing"
        return "widening"
    if _widens(b, a, new, old):
        return "narrowing"
    return "lossy"


def _domain_constraints(col: dict, snap: Snapshot) -> tuple[set[str], bool]:
    domain = snap.get("domains", {}).get(parse_type(col["type"])[0])
    if domain is None:
        return set(), True
    return set(domain["checks"]), domain["nullable"]


def _domain_allows(old_col: dict, old: Snapshot, new_col: dict, new: Snapshot) -> bool:
    """The new column's domain accepts everything the old one did."""
    old_checks, old_null = _domain_constraints(old_col, old)
    new_checks, new_null = _domain_constraints(new_col, new)
    return new_checks <= old_checks and (new_null or not old_null)


# --- diff ----------------------------------------------------------------------------------
def _change(kind: str, table: str | None, column: str | None, frm: Any, to: Any,
            details: dict[str, Any] | None = None) -> Change:
    return {"kind": kind, "table": table, "column": column, "from": frm, "to": to, "details": details or {}}


def _col_spec(col: dict[str, Any]) -> dict[str, Any]:
    return {"name": col["name"], "type": col["type"], "nullable": col["nullable"]}


def _default_spec(col: dict[str, Any]) -> dict[str, Any]:
    return {"default": col.get("default"), "identity": col.get("identity"), "generated": col.get("generated")}


def _single(columns: list[str]) -> str | None:
    return columns[0] if len(columns) == 1 else None


def _rename_candidates(removed: list[dict], added: list[dict], score) -> list[tuple[dict, dict, float]]:
    """Greedy one-to-one pairing by descending score; pairs scoring None are not candidates."""
    scored = []
    for r in removed:
        for a in added:
            s = score(r, a)
            if s is not None:
                scored.append((s, r["name"], a["name"], r, a))
    scored.sort(key=lambda t: (-t[0], t[1], t[2]))
    used_r, used_a, pairs = set(), set(), []
    for s, rn, an, r, a in scored:
        if rn in used_r or an in used_a:
            continue
        used_r.add(rn)
        used_a.add(an)
        pairs.append((r, a, s))
    return pairs


# --- renames: what speaks for a pair, and what against it --------------------------------
# PostgreSQL's RENAME keeps a column's type, nullability, default, place and foreign keys; a
# drop plus an add usually changes some of them (the new column comes last, often NOT NULL
# with a default, or with a foreign key of its own). The data the previous load left in
# MongoDB, looked up by `_id` in the restored database, settles it when it is clear.
RENAME_MAX_DIFFERENCES = 1  # of nullability, default, position and references
RENAME_MAX_DIFFERENCES_WITH_DATA = 2  # when the data evidence supports the pair
EVIDENCE_MIN_COMPARED = 3  # documents found in PostgreSQL before the data may decide
EVIDENCE_REFUTES_BELOW = 0.1  # share of equal values under which a rename is refuted
EVIDENCE_SUPPORTS_FROM = 0.5  # share of equal values from which it is supported
_STRUCTURE = ("nullable", "default", "position", "references")
_STRUCTURE_WORDS = {"nullable": "nullability", "default": "default", "position": "position",
                    "references": "references"}


def data_verdict(data: dict[str, Any] | None) -> str | None:
    """'refutes' or 'supports' when the data evidence is clear, None otherwise (no data, or
    fewer than EVIDENCE_MIN_COMPARED documents found in PostgreSQL)."""
    if not data or not data.get("available"):
        return None
    compared = data.get("found_in_postgres") or 0
    if compared < EVIDENCE_MIN_COMPARED:
        return None
    share = data.get("equal", 0) / compared
    if share < EVIDENCE_REFUTES_BELOW:
        return "refutes"
    if share >= EVIDENCE_SUPPORTS_FROM:
        return "supports"
    return None


def _fk_targets(table: dict, column: str, table_renames: dict[str, str]) -> list[str]:
    """The tables the foreign keys through `column` point at (renamed tables by their new name)."""
    return sorted({table_renames.get(fk["ref_table"], fk["ref_table"])
                   for fk in table.get("foreign_keys", []) if column in fk["columns"]})


def _place(columns: list[dict], name: str, kept: set[str]) -> int:
    """1-based place of column `name` among itself and the columns both sides keep."""
    position = next(c["position"] for c in columns if c["name"] == name)
    return 1 + sum(1 for c in columns if c["name"] in kept and c["position"] < position)


def _column_pair(r: dict, a: dict, ot: dict, nt: dict, old: Snapshot, new: Snapshot,
                 table_renames: dict[str, str], kept: set[str]) -> dict[str, Any] | None:
    """The structural evidence for reading removed column `r` as added column `a` renamed, or
    None when their types rule it out (only the same type or a widening can be a rename)."""
    direction = "same" if r["type"] == a["type"] else type_change_direction(r, a, old, new)
    if direction not in ("same", "widening"):
        return None
    refs_r, refs_a = _fk_targets(ot, r["name"], table_renames), _fk_targets(nt, a["name"], {})
    return {
        "type": {"from": r["type"], "to": a["type"], "match": direction},
        "position": {"from": r["position"], "to": a["position"],
                     "same": _place(ot["columns"], r["name"], kept) == _place(nt["columns"], a["name"], kept)},
        "nullable": {"from": r["nullable"], "to": a["nullable"], "same": r["nullable"] == a["nullable"]},
        "default": {"from": r.get("default"), "to": a.get("default"), "same": _default_spec(r) == _default_spec(a)},
        "references": {"from": refs_r, "to": refs_a, "same": refs_r == refs_a},
        "data": None,
    }


def _differences(evidence: dict[str, Any]) -> list[str]:
    return [key for key in _STRUCTURE if not evidence[key]["same"]]


def _words(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _judge(differences: list[str], data: dict[str, Any] | None) -> tuple[bool, str | None, str | None]:
    """(proposed?, why not, ruled out by 'data evidence' | 'structure')."""
    verdict = data_verdict(data)
    if verdict == "refutes":
        return False, (f"refuted by the data: {data['equal']} of {data['found_in_postgres']} values "
                       f"equal in MongoDB {data.get('collection')}"), "data evidence"
    limit = RENAME_MAX_DIFFERENCES_WITH_DATA if verdict == "supports" else RENAME_MAX_DIFFERENCES
    if len(differences) > limit:
        return False, f"{_words([_STRUCTURE_WORDS[d] for d in differences])} differ", "structure"
    return True, None, None


def _pair_score(evidence: dict[str, Any], differences: list[str]) -> float:
    score = (2.0 if evidence["type"]["match"] == "same" else 1.0) + len(_STRUCTURE) - len(differences)
    data = evidence.get("data")
    if data_verdict(data) is not None:
        score += 2.0 * data["equal"] / data["found_in_postgres"]
    return score


def _column_renames(tname: str, old_table: str, ot: dict, nt: dict, old: Snapshot, new: Snapshot,
                    evidence: Any = None, table_renames: dict[str, str] | None = None
                    ) -> tuple[list[tuple[dict, dict, dict]], dict[str, list[dict[str, Any]]]]:
    """Rename candidates of one table, paired greedily by score: ([(removed, added, evidence)],
    {removed column: the type-compatible columns it was not paired with, and why})."""
    table_renames = table_renames or {}
    ocols = {c["name"]: c for c in ot["columns"]}
    ncols = {c["name"]: c for c in nt["columns"]}
    removed = [ocols[n] for n in ocols if n not in ncols]
    added = [ncols[n] for n in ncols if n not in ocols]
    kept = set(ocols) & set(ncols)
    considered, scored = [], []
    for r in removed:
        for a in added:
            ev = _column_pair(r, a, ot, nt, old, new, table_renames, kept)
            if ev is None:
                continue
            differences = _differences(ev)
            if evidence is not None and len(differences) <= RENAME_MAX_DIFFERENCES_WITH_DATA:
                ev["data"] = evidence.column(old_table, tname, r["name"], a["name"])
            ok, why, by = _judge(differences, ev["data"])
            considered.append((r, a, ev, why, by))
            if ok:
                scored.append((_pair_score(ev, differences), r["name"], a["name"], r, a, ev))
    scored.sort(key=lambda t: (-t[0], t[1], t[2]))
    used_r, used_a, pairs = set(), set(), []
    for _, rn, an, r, a, ev in scored:
        if rn in used_r or an in used_a:
            continue
        used_r.add(rn)
        used_a.add(an)
        pairs.append((r, a, ev))
    rejected: dict[str, list[dict[str, Any]]] = {}
    for r, a, ev, why, by in considered:
        if why and r["name"] not in used_r and a["name"] not in used_a:
            rejected.setdefault(r["name"], []).append({"column": a["name"], "reason": why, "ruled_out_by": by,
                                                       "evidence": ev})
    return pairs, rejected


def _diff_columns(tname: str, ot: dict, nt: dict, old: Snapshot, new: Snapshot, *,
                  old_table: str | None = None, evidence: Any = None,
                  table_renames: dict[str, str] | None = None) -> list[Change]:
    changes: list[Change] = []
    ocols = {c["name"]: c for c in ot["columns"]}
    ncols = {c["name"]: c for c in nt["columns"]}
    removed = [ocols[n] for n in ocols if n not in ncols]
    added = [ncols[n] for n in ncols if n not in ocols]

    pairs, rejected = _column_renames(tname, old_table or tname, ot, nt, old, new, evidence, table_renames)
    renamed_r = {r["name"]: a for r, a, _ in pairs}
    renamed_a = {a["name"] for _, a, _ in pairs}
    for r, a, evidence_of_pair in pairs:
        changes.append(_change("column_renamed", tname, r["name"],
                               {"name": r["name"], "type": r["type"]}, {"name": a["name"], "type": a["type"]},
                               {"candidate": True, "evidence": evidence_of_pair}))
    for c in removed:
        if c["name"] not in renamed_r:
            details = {"not_a_rename": rejected[c["name"]]} if c["name"] in rejected else {}
            changes.append(_change("column_removed", tname, c["name"], _col_spec(c), None, details))
    for c in added:
        if c["name"] not in renamed_a:
            changes.append(_change("column_added", tname, c["name"], None,
                                   {**_col_spec(c), "default": c.get("default")}))

    for oc in ocols.values():
        # A renamed column's other changes are reported under its new name.
        nc = ncols.get(oc["name"]) or renamed_r.get(oc["name"])
        if nc is None:
            continue
        name = nc["name"]
        if oc["type"] != nc["type"]:
            direction = type_change_direction(oc, nc, old, new)
            changes.append(_change("column_type_changed", tname, name, {"type": oc["type"]}, {"type": nc["type"]},
                                   {"direction": direction, "from_family": type_family(oc, old),
                                    "to_family": type_family(nc, new)}))
        if oc["nullable"] != nc["nullable"]:
            changes.append(_change("column_nullability_changed", tname, name,
                                   {"nullable": oc["nullable"]}, {"nullable": nc["nullable"]},
                                   {"has_default": nc.get("default") is not None}))
        if _default_spec(oc) != _default_spec(nc):
            changes.append(_change("column_default_changed", tname, name, _default_spec(oc), _default_spec(nc)))
        if oc.get("comment") != nc.get("comment"):
            changes.append(_change("comment_changed", tname, name, {"comment": oc.get("comment")},
                                   {"comment": nc.get("comment")}))
    return changes


def _fk_signature(fk: dict, table_renames: dict[str, str]) -> tuple:
    ref = table_renames.get(fk["ref_table"], fk["ref_table"])
    return (tuple(fk["columns"]), ref, tuple(fk["ref_columns"]), fk["on_delete"], fk["on_update"])


def _fk_spec(fk: dict) -> dict[str, Any]:
    return {k: fk[k] for k in ("columns", "ref_table", "ref_columns", "on_delete", "on_update")}


def _index_signature(ix: dict) -> tuple:
    return (tuple(ix["columns"]), tuple(ix.get("include", [])), ix["unique"], ix["predicate"], ix["method"])


def _index_spec(ix: dict) -> dict[str, Any]:
    return {"columns": ix["columns"], "include": ix.get("include", []), "unique": ix["unique"],
            "predicate": ix["predicate"], "method": ix["method"]}


def _set_diff(old_items: Iterable[dict], new_items: Iterable[dict], signature) -> tuple[list[dict], list[dict]]:
    """(removed, added), matching items by signature (names ignored: a renamed index is the same index)."""
    old_sigs = {signature(i): i for i in old_items}
    new_sigs = {signature(i): i for i in new_items}
    removed = [old_sigs[s] for s in sorted(old_sigs, key=repr) if s not in new_sigs]
    added = [new_sigs[s] for s in sorted(new_sigs, key=repr) if s not in old_sigs]
    return removed, added


# --- constraints that follow a rename or a type change ------------------------------------
# A constraint or index over a renamed column (or pointing at a renamed table or column) is
# the same constraint: PostgreSQL carries it along. It is listed in the details of the rename
# it follows ("folded"), not reported as a removal plus an addition. The same for a predicate
# or CHECK that PostgreSQL only re-printed, with new casts, after its column's type changed.
FOLLOWS_COLUMN_RENAME = "follows a column rename"
FOLLOWS_TABLE_RENAME = "follows a table rename"
REPRINTED = "re-printed by PostgreSQL after a type change"
KEY_TAKEN_OVER = "the unique constraint became the primary key"
KEY_STAYS_UNIQUE = "the former primary key's columns stay unique"
_FOLD_REASONS = {"column": FOLLOWS_COLUMN_RENAME, "table": FOLLOWS_TABLE_RENAME, "type": REPRINTED}


class _Follow:
    """What constraints may follow: table renames (old → new), column renames per table (new
    table name → {old: new}) and the columns whose type changed (new table name → new column
    names). Collects each folded item with the change it belongs to: ("column", table, old
    column), ("table", old table), ("type", table, column) or ("key", table)."""

    def __init__(self, tables: dict[str, str], columns: dict[str, dict[str, str]],
                 type_changed: dict[str, set[str]]):
        self.tables, self.columns, self.type_changed = tables, columns, type_changed
        self.folded: list[tuple[tuple, dict[str, Any]]] = []

    def fold(self, target: tuple, instead_of: list[str], table: str, name: str | None, frm: Any, to: Any,
             reason: str | None = None) -> None:
        self.folded.append((target, {"instead_of": instead_of, "table": table, "name": name, "from": frm,
                                     "to": to, "reason": reason or _FOLD_REASONS[target[0]]}))


_IDENT_OR_LITERAL = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")+\"|[^\W\d]\w*")


def _quote_ident(name: str) -> str:
    """A column name as PostgreSQL prints it in expressions."""
    return name if re.fullmatch(r"[a-z_][a-z0-9_$]*", name) else '"' + name.replace('"', '""') + '"'


def _rename_idents(text: str | None, renames: dict[str, str]) -> str | None:
    """`text` (an index key, a predicate, a CHECK) with renamed column names replaced; string
    literals, type names after `::` and function names are left alone."""
    if not text or not renames:
        return text

    def swap(m: re.Match) -> str:
        token = m.group(0)
        if token.startswith("'") or text[max(0, m.start() - 2):m.start()] == "::" or text[m.end():m.end() + 1] == "(":
            return token
        name = token[1:-1].replace('""', '"') if token.startswith('"') else token
        return _quote_ident(renames[name]) if name in renames else token

    return _IDENT_OR_LITERAL.sub(swap, text)


_CAST = re.compile(r"::(?:\"(?:[^\"]|\"\")+\"|[a-z_]\w*)(?:\.(?:\"(?:[^\"]|\"\")+\"|[a-z_]\w*))?"
                   r"(?:\s+(?:precision|varying|with(?:out)?\s+time\s+zone))*(?:\(\d+(?:,\s*\d+)?\))?(?:\[\])*")
_PAREN_ATOM = re.compile(r"\((-?\d+(?:\.\d+)?(?:e[-+]?\d+)?|'(?:[^']|'')*'|\"(?:[^\"]|\"\")+\"|[^\W\d]\w*)\)")


def _without_casts(text: str | None) -> str | None:
    """An expression without the casts PostgreSQL adds when it prints it again after a type
    change: `(score <> (0)::double precision)` and `(score <> 0)` both give `(score <> 0)`."""
    if not text:
        return text
    out = _CAST.sub("", text)
    while True:
        stripped = _PAREN_ATOM.sub(r"\1", out)
        if stripped == out:
            return out
        out = stripped


def _mentioned(texts: Iterable[str | None], names: Iterable[str]) -> list[str]:
    texts = [t for t in texts if t]
    return [n for n in names if any(_mentions(t, n) for t in texts)]


def _set_diff_following(old_items: Iterable[dict], new_items: Iterable[dict], signature, translate=None,
                        reprint=None) -> tuple[list[dict], list[dict], list[tuple[dict, dict, tuple]]]:
    """(removed, added, followed): `_set_diff`, then each removed item that matches an added one
    once renamed columns and tables are followed (`translate(item) -> (item in new names,
    [targets])`) or once PostgreSQL's re-printing after a type change is undone
    (`reprint(item) -> (signature without casts, [targets])`) is followed, not removed."""
    old_sigs = {signature(i): i for i in old_items}
    new_sigs = {signature(i): i for i in new_items}
    removed = [old_sigs[s] for s in sorted(old_sigs, key=repr) if s not in new_sigs]
    still_added = {s: new_sigs[s] for s in sorted(new_sigs, key=repr) if s not in old_sigs}
    followed, still_removed = [], []
    for item in removed:
        moved, targets = translate(item) if translate else (item, [])
        sig = signature(moved)
        if targets and sig in still_added:
            followed.append((item, still_added.pop(sig), targets[0]))
            continue
        if reprint:
            bare, type_targets = reprint(moved)
            match = next((s for s, n in still_added.items() if reprint(n)[0] == bare), None) if type_targets else None
            if match is not None:
                followed.append((item, still_added.pop(match), (targets or type_targets)[0]))
                continue
        still_removed.append(item)
    return still_removed, list(still_added.values()), followed


def _fk_follow(fk: dict, tname: str, follow: _Follow) -> tuple[dict, list[tuple]]:
    own = follow.columns.get(tname, {})
    targets: list[tuple] = [("column", tname, c) for c in fk["columns"] if c in own]
    ref = follow.tables.get(fk["ref_table"], fk["ref_table"])
    if ref != fk["ref_table"]:
        targets.append(("table", fk["ref_table"]))
    ref_own = follow.columns.get(ref, {})
    targets += [("column", ref, c) for c in fk["ref_columns"] if c in ref_own]
    return dict(fk, columns=[own.get(c, c) for c in fk["columns"]], ref_table=ref,
                ref_columns=[ref_own.get(c, c) for c in fk["ref_columns"]]), targets


def _index_follow(ix: dict, tname: str, follow: _Follow) -> tuple[dict, list[tuple]]:
    own = follow.columns.get(tname, {})
    used = _mentioned([*ix["columns"], *ix.get("include", []), ix["predicate"]], own)
    moved = dict(ix, columns=[_rename_idents(k, own) for k in ix["columns"]],
                 include=[own.get(c, c) for c in ix.get("include", [])],
                 predicate=_rename_idents(ix["predicate"], own))
    return moved, [("column", tname, c) for c in used]


def _index_reprint(ix: dict, tname: str, follow: _Follow) -> tuple[tuple, list[tuple]]:
    used = _mentioned([*ix["columns"], ix["predicate"]], sorted(follow.type_changed.get(tname, ())))
    bare = dict(ix, columns=[_without_casts(k) for k in ix["columns"]], predicate=_without_casts(ix["predicate"]))
    return _index_signature(bare), [("type", tname, c) for c in used]


def _unique_follow(u: dict, tname: str, follow: _Follow) -> tuple[dict, list[tuple]]:
    own = follow.columns.get(tname, {})
    used = [c for c in u["columns"] if c in own] or _mentioned([u.get("definition")], own)
    return (dict(u, columns=[own.get(c, c) for c in u["columns"]],
                 definition=_rename_idents(u.get("definition"), own)), [("column", tname, c) for c in used])


def _check_follow(ck: dict, tname: str, follow: _Follow) -> tuple[dict, list[tuple]]:
    own = follow.columns.get(tname, {})
    return (dict(ck, expression=_rename_idents(ck["expression"], own)),
            [("column", tname, c) for c in _mentioned([ck["expression"]], own)])


def _check_reprint(ck: dict, tname: str, follow: _Follow) -> tuple[str | None, list[tuple]]:
    used = _mentioned([ck["expression"]], sorted(follow.type_changed.get(tname, ())))
    return _without_casts(ck["expression"]), [("type", tname, c) for c in used]


def _key_names(keys: list[str]) -> list[str]:
    return [k[1:-1].replace('""', '"') if len(k) > 1 and k[0] == k[-1] == '"' else k for k in keys]


def _fold_key_takeover(tname: str, changes: list[Change], follow: _Follow) -> list[Change]:
    """A unique constraint (or unique index) on the columns of the new primary key was taken
    over by it; one on the former key's columns keeps what the key guaranteed. Either is part
    of the primary key change, not a constraint relaxed or a new one on existing data."""
    key = next((c for c in changes if c["kind"] == "primary_key_changed"), None)
    if key is None:
        return changes
    own = follow.columns.get(tname, {})
    new_key = set((key["to"] or {}).get("columns") or [])
    old_key = {own.get(c, c) for c in (key["from"] or {}).get("columns") or []}
    kept = []
    for c in changes:
        spec = c["from"] if c["kind"].endswith("_removed") else c["to"]
        columns: set[str] = set()
        if c["kind"] in ("unique_removed", "unique_added"):
            columns = set(spec["columns"])
        elif c["kind"] in ("index_removed", "index_added") and spec["unique"] and not spec["predicate"]:
            columns = set(_key_names(spec["columns"]))
        if columns and c["kind"].endswith("_removed") and columns == new_key:
            follow.fold(("key", tname), [c["kind"]], tname, c["details"].get("name"), c["from"], None, KEY_TAKEN_OVER)
        elif columns and c["kind"].endswith("_added") and columns == old_key:
            follow.fold(("key", tname), [c["kind"]], tname, c["details"].get("name"), None, c["to"], KEY_STAYS_UNIQUE)
        else:
            kept.append(c)
    return kept


def _diff_constraints(tname: str, ot: dict, nt: dict, table_renames: dict[str, str],
                      new_columns: set[str], follow: _Follow | None = None) -> list[Change]:
    changes: list[Change] = []
    opk = ot["primary_key"]["columns"] if ot.get("primary_key") else None
    npk = nt["primary_key"]["columns"] if nt.get("primary_key") else None
    own = follow.columns.get(tname, {}) if follow else {}
    if opk != npk:
        renamed = [c for c in opk or [] if c in own]
        if renamed and [own.get(c, c) for c in opk] == npk:
            follow.fold(("column", tname, renamed[0]), ["primary_key_changed"], tname, nt["primary_key"]["name"],
                        {"columns": opk}, {"columns": npk})
        else:
            changes.append(_change("primary_key_changed", tname, None,
                                   {"columns": opk} if opk is not None else None,
                                   {"columns": npk} if npk is not None else None))

    def following(translate, reprint=None):
        if follow is None:
            return {}
        return {"translate": lambda item: translate(item, tname, follow),
                "reprint": (lambda item: reprint(item, tname, follow)) if reprint else None}

    def fold(followed, kinds, spec):
        for o, n, target in followed:
            follow.fold(target, list(kinds), tname, n.get("name"), spec(o), spec(n))

    if follow is None:
        removed, added = _set_diff(ot["foreign_keys"], nt["foreign_keys"], lambda fk: _fk_signature(fk, table_renames))
        followed = []
    else:
        removed, added, followed = _set_diff_following(ot["foreign_keys"], nt["foreign_keys"],
                                                       lambda fk: _fk_signature(fk, {}), **following(_fk_follow))
        fold(followed, ("foreign_key_removed", "foreign_key_added"), _fk_spec)
    removed_cols = {tuple(own.get(c, c) for c in f["columns"]) for f in removed}
    modified_cols = removed_cols & {tuple(f["columns"]) for f in added}
    for fk in removed:
        changes.append(_change("foreign_key_removed", tname, _single(fk["columns"]), _fk_spec(fk), None,
                               {"name": fk["name"],
                                "modified": tuple(own.get(c, c) for c in fk["columns"]) in modified_cols}))
    for fk in added:
        changes.append(_change("foreign_key_added", tname, _single(fk["columns"]), None, _fk_spec(fk),
                               {"name": fk["name"], "modified": tuple(fk["columns"]) in modified_cols}))

    removed, added, followed = _set_diff_following(ot["indexes"], nt["indexes"], _index_signature,
                                                   **following(_index_follow, _index_reprint))
    if follow is not None:
        fold(followed, ("index_removed", "index_added"), _index_spec)
    names = {c["name"] for c in ot["columns"]} | {c["name"] for c in nt["columns"]}
    for ix in removed:
        changes.append(_change("index_removed", tname, _index_column(ix["columns"], names), _index_spec(ix), None,
                               {"name": ix["name"]}))
    for ix in added:
        changes.append(_change("index_added", tname, _index_column(ix["columns"], names), None, _index_spec(ix),
                               {"name": ix["name"]}))

    def unique_spec(u):
        return {"columns": u["columns"]} | ({"definition": u["definition"]} if u.get("definition") else {})

    uniques_old = [{**u, "constraint": "unique"} for u in ot["unique"]] + [
        {"name": x["name"], "columns": [], "definition": x["definition"], "constraint": "exclusion"}
        for x in ot.get("exclusions", [])]
    uniques_new = [{**u, "constraint": "unique"} for u in nt["unique"]] + [
        {"name": x["name"], "columns": [], "definition": x["definition"], "constraint": "exclusion"}
        for x in nt.get("exclusions", [])]
    removed, added, followed = _set_diff_following(
        uniques_old, uniques_new, lambda u: (tuple(u["columns"]), u.get("definition") if not u["columns"] else None),
        **following(_unique_follow))
    if follow is not None:
        fold(followed, ("unique_removed", "unique_added"), unique_spec)
    for u in removed:
        changes.append(_change("unique_removed", tname, _single(u["columns"]), unique_spec(u), None,
                               {"name": u["name"], "constraint": u["constraint"]}))
    for u in added:
        on_new = bool(u["columns"]) and set(u["columns"]) <= new_columns
        changes.append(_change("unique_added", tname, _single(u["columns"]), None, unique_spec(u),
                               {"name": u["name"], "constraint": u["constraint"], "on_new_columns": on_new}))

    removed, added, followed = _set_diff_following(ot["checks"], nt["checks"], lambda c: c["expression"],
                                                   **following(_check_follow, _check_reprint))
    if follow is not None:
        fold(followed, ("check_removed", "check_added"), lambda ck: {"expression": ck["expression"]})
    old_names = {c["name"] for c in ot["columns"]} | {c["name"] for c in nt["columns"]}
    for ck in removed:
        changes.append(_change("check_removed", tname, None, {"expression": ck["expression"]}, None,
                               {"name": ck["name"]}))
    for ck in added:
        used = sorted(n for n in old_names if _mentions(ck["expression"], n))
        on_new = bool(used) and set(used) <= new_columns
        changes.append(_change("check_added", tname, _single(used), None, {"expression": ck["expression"]},
                               {"name": ck["name"], "columns": used, "on_new_columns": on_new,
                                "validated": ck.get("validated", True)}))
    if follow is not None:
        changes = _fold_key_takeover(tname, changes, follow)

    opart = {p["name"]: p for p in ot.get("partitions", [])}
    npart = {p["name"]: p for p in nt.get("partitions", [])}
    for name in sorted(set(opart) - set(npart)):
        changes.append(_change("partition_removed", tname, None, {"partition": name, "bound": opart[name]["bound"]},
                               None))
    for name in sorted(set(npart) - set(opart)):
        changes.append(_change("partition_added", tname, None, None,
                               {"partition": name, "bound": npart[name]["bound"]}))
    if ot.get("comment") != nt.get("comment"):
        changes.append(_change("comment_changed", tname, None, {"comment": ot.get("comment")},
                               {"comment": nt.get("comment")}))
    return changes


def _index_column(keys: list[str], names: set[str]) -> str | None:
    """The column of a one-column index; None for expressions and several columns. Index keys
    come from pg_get_indexdef, which double-quotes names that need it."""
    if len(keys) != 1:
        return None
    key = keys[0]
    if len(key) > 1 and key[0] == key[-1] == '"':
        key = key[1:-1].replace('""', '"')
    return key if key in names else None


def _mentions(expression: str, column: str) -> bool:
    """Whether a CHECK expression names `column` (bare or double-quoted)."""
    quoted = '"' + column.replace('"', '""') + '"'
    if quoted in expression:
        return True
    return re.search(r'(?<![\w".])' + re.escape(column) + r'(?![\w"])', expression) is not None


def _table_columns(t: dict) -> list[dict[str, Any]]:
    return [_col_spec(c) for c in t["columns"]]


def _table_similarity(a: dict, b: dict) -> float:
    """Jaccard similarity of the (name, type) sets of two tables' columns."""
    sa = {(c["name"], c["type"]) for c in a["columns"]}
    sb = {(c["name"], c["type"]) for c in b["columns"]}
    return len(sa & sb) / len(sa | sb) if sa | sb else 0.0


TABLE_RENAME_SIMILARITY = 0.6
# A table that other tables' foreign keys followed from its old name to its new one is a
# rename candidate at a lower similarity: PostgreSQL's RENAME carries those references along.
TABLE_RENAME_SIMILARITY_WITH_REFERENCES = 0.4


def _moved_references(old_name: str, new_name: str, old: Snapshot, new: Snapshot) -> int:
    """Foreign keys of tables present on both sides that pointed at `old_name` and now point,
    from the same columns, at `new_name`."""
    moved = 0
    for tname in set(old["tables"]) & set(new["tables"]):
        before = {tuple(fk["columns"]) for fk in old["tables"][tname]["foreign_keys"] if fk["ref_table"] == old_name}
        after = {tuple(fk["columns"]) for fk in new["tables"][tname]["foreign_keys"] if fk["ref_table"] == new_name}
        moved += len(before & after)
    return moved


def _table_match(r: dict, a: dict, old: Snapshot, new: Snapshot) -> dict[str, Any]:
    """How alike a dropped and an added table are: the columns kept by name (same or widened
    type) count fully, columns that look renamed (by the column rules) count half, over all
    the distinct columns of both."""
    rcols = {c["name"]: c for c in r["columns"]}
    acols = {c["name"]: c for c in a["columns"]}
    kept = sorted(n for n in rcols if n in acols and (
        rcols[n]["type"] == acols[n]["type"] or type_change_direction(rcols[n], acols[n], old, new) == "widening"))
    pairs, _ = _column_renames(a["qname"], r["qname"], r, a, old, new)
    renamed = sorted([p[0]["name"], p[1]["name"]] for p in pairs)
    union = len(rcols) + len(acols) - len(kept) - len(renamed)
    similarity = (len(kept) + 0.5 * len(renamed)) / union if union else 0.0
    return {"similarity": similarity, "kept": kept, "renamed": renamed,
            "moved": _moved_references(r["qname"], a["qname"], old, new)}


def _table_renames(removed: list[dict], added: list[dict], old: Snapshot, new: Snapshot, evidence: Any
                   ) -> tuple[list[tuple[dict, dict, dict]], dict[str, list[dict[str, Any]]]]:
    """Table rename candidates paired greedily: ([(removed, added, evidence)], {removed table:
    the candidates the data evidence refuted})."""
    scored, refuted = [], {}
    for r in removed:
        for a in added:
            m = _table_match(r, a, old, new)
            if not (m["similarity"] >= TABLE_RENAME_SIMILARITY or (
                    m["moved"] and m["similarity"] >= TABLE_RENAME_SIMILARITY_WITH_REFERENCES)):
                continue
            ev = {"column_similarity": round(m["similarity"], 3), "shared_columns": m["kept"],
                  "renamed_columns": m["renamed"], "references_moved": m["moved"],
                  "primary_key": {"from": (r.get("primary_key") or {}).get("columns"),
                                  "to": (a.get("primary_key") or {}).get("columns")},
                  "data": None}
            if evidence is not None:
                ev["data"] = evidence.table(r["qname"], a["qname"],
                                            [(c, c) for c in m["kept"]] + [tuple(p) for p in m["renamed"]])
            ok, why, by = _judge([], ev["data"])
            if not ok:
                refuted.setdefault(r["qname"], []).append({"table": a["qname"], "reason": why, "ruled_out_by": by,
                                                           "evidence": ev})
                continue
            data = ev["data"]
            bonus = data["equal"] / data["found_in_postgres"] if data_verdict(data) else 0.0
            scored.append((m["similarity"] + 0.1 * min(m["moved"], 3) + bonus, r["qname"], a["qname"], r, a, ev))
    scored.sort(key=lambda t: (-t[0], t[1], t[2]))
    used_r, used_a, pairs = set(), set(), []
    for _, rn, an, r, a, ev in scored:
        if rn in used_r or an in used_a:
            continue
        used_r.add(rn)
        used_a.add(an)
        pairs.append((r, a, ev))
    return pairs, {name: entries for name, entries in refuted.items() if name not in used_r}


def _attach_folded(changes: list[Change], follow: _Follow) -> None:
    """Put each folded item in the details of the change it follows."""
    index: dict[tuple, Change] = {}
    for c in changes:
        if c["kind"] == "column_renamed":
            index[("column", c["table"], c["column"])] = c
        elif c["kind"] == "table_renamed":
            index[("table", c["table"])] = c
        elif c["kind"] == "column_type_changed":
            index[("type", c["table"], c["column"])] = c
        elif c["kind"] == "primary_key_changed":
            index[("key", c["table"])] = c
    for target, entry in follow.folded:
        index[target]["details"].setdefault("folded", []).append(entry)


def diff_snapshots(old: Snapshot, new: Snapshot, evidence: Any = None) -> list[Change]:
    """Every difference between two snapshots as unclassified changes, in a stable order.

    `evidence`, when given, is asked about every plausible rename: `evidence.column(old table,
    new table, old column, new column)` and `evidence.table(old table, new table, [(old column,
    new column)])` return the data evidence (docs/detection.md); a candidate it refutes is
    not proposed. Without it the diff is pure."""
    ot, nt = old["tables"], new["tables"]
    removed = [dict(ot[n], qname=n) for n in sorted(set(ot) - set(nt))]
    added = [dict(nt[n], qname=n) for n in sorted(set(nt) - set(ot))]

    changes: list[Change] = []
    table_renames: dict[str, str] = {}
    pairs: list[tuple[str, str]] = []
    renamed_tables, refuted_tables = _table_renames(removed, added, old, new, evidence)
    for r, a, ev in renamed_tables:
        table_renames[r["qname"]] = a["qname"]
        pairs.append((r["qname"], a["qname"]))
        changes.append(_change("table_renamed", r["qname"], None, {"table": r["qname"]}, {"table": a["qname"]},
                               {"candidate": True, "evidence": ev}))
    for t in removed:
        if t["qname"] not in table_renames:
            details = {"not_a_rename": refuted_tables[t["qname"]]} if t["qname"] in refuted_tables else {}
            changes.append(_change("table_removed", t["qname"], None,
                                   {"kind": t["kind"], "columns": _table_columns(t)}, None, details))
    for t in added:
        if t["qname"] not in table_renames.values():
            changes.append(_change("table_added", t["qname"], None, None,
                                   {"kind": t["kind"], "columns": _table_columns(t)}))

    # Columns first, everywhere: a constraint may follow a column renamed in another table.
    compared = [(o, n) for o, n in [(n, n) for n in sorted(set(ot) & set(nt))] + pairs if ot[o] != nt[n]]
    column_changes = {n: _diff_columns(n, ot[o], nt[n], old, new, old_table=o, evidence=evidence,
                                       table_renames=table_renames) for o, n in compared}
    follow = _Follow(table_renames,
                     {n: {c["column"]: c["to"]["name"] for c in cs if c["kind"] == "column_renamed"}
                      for n, cs in column_changes.items()},
                     {n: {c["column"] for c in cs if c["kind"] == "column_type_changed"}
                      for n, cs in column_changes.items()})
    for oname, nname in compared:
        new_columns = {c["column"] for c in column_changes[nname] if c["kind"] == "column_added"}
        changes += column_changes[nname]
        changes += _diff_constraints(nname, ot[oname], nt[nname], table_renames, new_columns, follow)
    # A new table's foreign keys are new relationships (the impact matrix's row).
    for t in added:
        if t["qname"] not in table_renames.values():
            for fk in sorted(t["foreign_keys"], key=lambda fk: _fk_signature(fk, {})):
                changes.append(_change("foreign_key_added", t["qname"], _single(fk["columns"]), None, _fk_spec(fk),
                                       {"name": fk["name"], "modified": False, "new_table": True}))
    _attach_folded(changes, follow)

    changes += _diff_types(old, new)
    for name in sorted(set(old.get("views", {})) - set(new.get("views", {}))):
        changes.append(_change("view_removed", name, None, old["views"][name], None))
    for name in sorted(set(new.get("views", {})) - set(old.get("views", {}))):
        changes.append(_change("view_added", name, None, None, new["views"][name]))
    return changes


def _users_of(type_name: str, snap: Snapshot) -> list[tuple[str, str]]:
    """(table, column) pairs whose type is `type_name`, an array of it, or a domain over it."""
    names = {type_name} | {d for d, spec in snap.get("domains", {}).items()
                           if parse_type(spec["base_type"])[0] == type_name}
    found = []
    for tname in sorted(snap["tables"]):
        for col in snap["tables"][tname]["columns"]:
            if parse_type(col["type"])[0] in names:
                found.append((tname, col["name"]))
    return found


def _diff_types(old: Snapshot, new: Snapshot) -> list[Change]:
    changes: list[Change] = []
    for enum in sorted(set(old.get("enums", {})) & set(new.get("enums", {}))):
        before, after = old["enums"][enum], new["enums"][enum]
        gone = [v for v in before if v not in after]
        came = [v for v in after if v not in before]
        # Columns that only start or stop using the enum are reported as their own change.
        used_before = set(_users_of(enum, old))
        users = [u for u in _users_of(enum, new) if u in used_before] or [(None, None)]
        for value in gone:
            for table, column in users:
                changes.append(_change("enum_value_removed", table, column, {"enum": enum, "value": value}, None,
                                       {"enum": enum, "position": before.index(value) + 1}))
        for value in came:
            for table, column in users:
                changes.append(_change("enum_value_added", table, column, None, {"enum": enum, "value": value},
                                       {"enum": enum, "position": after.index(value) + 1}))
    for domain in sorted(set(old.get("domains", {})) & set(new.get("domains", {}))):
        before, after = old["domains"][domain], new["domains"][domain]
        if before == after:
            continue
        widening = (_widens(before["base_type"], after["base_type"], old, new)
                    and set(after["checks"]) <= set(before["checks"])
                    and (after["nullable"] or not before["nullable"]))
        used_before = set(_users_of(domain, old))
        users = [u for u in _users_of(domain, new) if u in used_before] or [(None, None)]
        for table, column in users:
            changes.append(_change("domain_changed", table, column, dict(before, domain=domain),
                                   dict(after, domain=domain),
                                   {"domain": domain, "direction": "widening" if widening else "narrowing"}))
    return changes


# --- classification ------------------------------------------------------------------------
def _short(table: str | None, column: str | None = None) -> str:
    """'public.campaigns' → 'campaigns'; other schemas stay qualified."""
    name = table or "?"
    if name.startswith("public."):
        name = name[len("public."):]
    return f"{name}.{column}" if column else name


def _rule(change: Change, old: Snapshot, new: Snapshot) -> tuple[str, str, str]:
    """(classification, reason, impact row) for one change, following the seed's tables."""
    kind, d = change["kind"], change["details"]
    if kind == "table_added":
        return "safe", "new table", "new_table"
    if kind == "table_removed":
        return "review", "dropped table", "dropped"
    if kind in ("table_renamed", "column_renamed"):
        return "review", "rename candidate: a rename or a drop plus an add is a decision", "field_rename"
    if kind == "column_added":
        col = _find_column(new, change["table"], change["column"])
        family = type_family(col, new) if col else "unknown type ?"
        if is_unknown(family):
            return "review", f"new field of a type the tool does not know ({family[13:]})", (
                "new_optional_field" if change["to"]["nullable"] else "new_required_field")
        if change["to"]["nullable"]:
            return "safe", "new optional field", "new_optional_field"
        why = "with a default" if change["to"].get("default") is not None else "without a default"
        return "review", f"new required field (NOT NULL, {why})", "new_required_field"
    if kind == "column_removed":
        return "review", "dropped field", "dropped"
    if kind in ("column_type_changed", "domain_changed"):
        direction = d["direction"]  # domain changes are never "unknown": their base types are compared
        if direction == "widening":
            return "safe", "widening type change: every existing value fits", "type_change"
        if direction == "unknown":
            return "review", ("type change involving a type the tool does not know "
                              f"({change['from']['type']} → {change['to']['type']})"), "type_change"
        return "review", ("narrowing type change: values may be cut or rejected" if direction == "narrowing"
                          else "type change that may lose data"), "type_change"
    if kind == "column_nullability_changed":
        if not change["to"]["nullable"]:
            return "review", "breaking constraint: new NOT NULL on an existing field", "new_required_field"
        return "safe", "constraint relaxed: the field may now be null", "relaxed_constraint"
    if kind == "column_default_changed":
        return "safe", "default changed: existing values are untouched", "default_change"
    if kind == "primary_key_changed":
        return "review", "primary key change: document _id changes", "key_change"
    if kind == "foreign_key_added":
        if d.get("modified"):
            return "review", "relationship modification", "relationship_change"
        return "safe", "new relationship (becomes an index)", "new_relationship"
    if kind == "foreign_key_removed":
        return "review", "relationship modification" if d.get("modified") else "relationship removed", "relationship_change"
    if kind in ("index_added", "index_removed"):
        unique = (change["to"] or change["from"])["unique"]
        if kind == "index_added" and unique:
            return "review", "breaking constraint: new unique index on existing data", "breaking_constraint"
        return "safe", "index addition" if kind == "index_added" else "index removal: no data changes", "index"
    if kind in ("unique_added", "check_added"):
        what = "unique" if kind == "unique_added" else "check"
        if d.get("on_new_columns"):
            return "safe", f"non-breaking constraint: {what} on new fields only", "relaxed_constraint"
        return "review", f"breaking constraint: new {what} on existing data", "breaking_constraint"
    if kind in ("unique_removed", "check_removed"):
        return "safe", "constraint relaxed: every existing value still fits", "relaxed_constraint"
    if kind == "enum_value_added":
        return "safe", "enum value added", "enum_value_added"
    if kind == "enum_value_removed":
        return "review", "enum value removed: stored values may no longer be valid", "enum_value_removed"
    if kind in ("partition_added", "partition_removed"):
        return "safe", "partitions are folded into their table: rows move, the schema does not", "no_data_impact"
    if kind in ("view_added", "view_removed"):
        return "safe", "views are listed, not loaded", "no_data_impact"
    if kind == "comment_changed":
        return "safe", "comment only", "no_data_impact"
    return "review", f"change of kind {kind} has no rule: review it", "breaking_constraint"


def _find_column(snap: Snapshot, table: str | None, column: str | None) -> dict | None:
    t = snap["tables"].get(table or "")
    if not t:
        return None
    return next((c for c in t["columns"] if c["name"] == column), None)


def _summary(change: Change, old: Snapshot, new: Snapshot) -> str:
    kind, t, c, d = change["kind"], change["table"], change["column"], change["details"]
    frm, to = change["from"], change["to"]
    if kind == "column_added":
        col = _find_column(new, t, c)
        family = type_family(col, new) if col else "?"
        word = "New field" if to["nullable"] else "New required field"
        return f"{word}: {_short(t, c)} ({family})"
    if kind == "column_removed":
        return f"Dropped: {_short(t, c)}"
    if kind == "column_type_changed":
        ff, tf = d["from_family"], d["to_family"]
        if ff != tf:
            return f"Type change: {_short(t, c)} ({ff} → {tf})"
        word = {"widening": "widening", "narrowing": "narrowing", "lossy": "may lose data"}.get(d["direction"], d["direction"])
        return f"Type change: {_short(t, c)} ({frm['type']} → {to['type']}, {word})"
    if kind == "column_renamed":
        col = _find_column(new, t, to["name"])
        family = type_family(col, new) if col else to["type"]
        return f"Possible rename: {_short(t, c)} → {_short(t, to['name'])} ({family})"
    if kind == "table_added":
        return f"New table: {_short(t)} ({len(to['columns'])} fields)"
    if kind == "table_removed":
        return f"Dropped table: {_short(t)}"
    if kind == "table_renamed":
        return f"Possible table rename: {_short(t)} → {_short(to['table'])}"
    if kind == "column_nullability_changed":
        return f"{'Now optional' if to['nullable'] else 'Now required'}: {_short(t, c)}"
    if kind == "column_default_changed":
        def show(spec: dict) -> str:
            if spec["identity"]:
                return f"identity {spec['identity']}"
            if spec["generated"]:
                return f"generated {spec['generated']}"
            return spec["default"] if spec["default"] is not None else "none"
        return f"Default change: {_short(t, c)} ({show(frm)} → {show(to)})"
    if kind == "primary_key_changed":
        def cols(spec):
            return ", ".join(spec["columns"]) if spec else "none"
        notes = []
        for item in d.get("folded", []):
            spec = item["from"] or item["to"]
            what = ", ".join(_key_names(spec["columns"]))
            word = "unique index" if item["instead_of"][0].startswith("index") else "unique constraint"
            if item["reason"] == KEY_TAKEN_OVER:
                notes.append(f"the {word} on {what} became the key")
            elif item["reason"] == KEY_STAYS_UNIQUE:
                notes.append(f"a {word} keeps {what} unique")
        return f"Primary key change: {_short(t)} ({cols(frm)} → {cols(to)}{''.join('; ' + n for n in notes)})"
    if kind in ("foreign_key_added", "foreign_key_removed"):
        spec = to or frm
        word = "New relationship" if kind == "foreign_key_added" else "Dropped relationship"
        if d.get("modified"):
            word = "Changed relationship (new)" if kind == "foreign_key_added" else "Changed relationship (old)"
        return (f"{word}: {_short(t)}({', '.join(spec['columns'])}) → "
                f"{_short(spec['ref_table'])}({', '.join(spec['ref_columns'])}) on delete {spec['on_delete'].lower()}")
    if kind in ("index_added", "index_removed"):
        spec = to or frm
        word = ("New " if kind == "index_added" else "Dropped ") + ("unique index" if spec["unique"] else "index")
        where = f" where {spec['predicate']}" if spec["predicate"] else ""
        return f"{word}: {_short(t)} ({', '.join(spec['columns'])}){where}"
    if kind in ("unique_added", "unique_removed"):
        spec = to or frm
        word = "New unique constraint" if kind == "unique_added" else "Dropped unique constraint"
        what = ", ".join(spec["columns"]) if spec["columns"] else spec.get("definition", "")
        return f"{word}: {_short(t)} ({what})"
    if kind in ("check_added", "check_removed"):
        spec = to or frm
        word = "New check" if kind == "check_added" else "Dropped check"
        return f"{word}: {_short(t)} {spec['expression']}"
    if kind in ("enum_value_added", "enum_value_removed"):
        spec = to or frm
        word = "New enum value" if kind == "enum_value_added" else "Dropped enum value"
        used = f" ({_short(t, c)})" if t else " (not used by any table)"
        return f"{word}: {_short(spec['enum'])} '{spec['value']}'{used}"
    if kind == "domain_changed":
        used = f" used by {_short(t, c)}" if t else ""
        parts = [f"{frm['base_type']} → {to['base_type']}"] if frm["base_type"] != to["base_type"] else []
        parts += [f"new {c}" for c in to["checks"] if c not in frm["checks"]]
        parts += [f"dropped {c}" for c in frm["checks"] if c not in to["checks"]]
        if frm["nullable"] != to["nullable"]:
            parts.append("NOT NULL" if not to["nullable"] else "nullable")
        if frm.get("default") != to.get("default"):
            parts.append(f"default {to.get('default')}")
        return f"Domain change: {_short(d['domain'])} ({'; '.join(parts)}, {d['direction']}){used}"
    if kind in ("partition_added", "partition_removed"):
        spec = to or frm
        word = "New partition" if kind == "partition_added" else "Dropped partition"
        return f"{word}: {_short(t)} ← {_short(spec['partition'])}"
    if kind in ("view_added", "view_removed"):
        spec = to or frm
        word = "New" if kind == "view_added" else "Dropped"
        what = "materialized view" if spec.get("kind") == "materialized_view" else "view"
        return f"{word} {what}: {_short(t)} (listed, not loaded)"
    if kind == "comment_changed":
        return f"Comment change: {_short(t, c)}"
    return f"{kind}: {_short(t, c)}"


def change_id(change: Change) -> str:
    """Stable id: the same change detected twice gets the same id, so decisions replay."""
    key = "|".join([change["kind"], change["table"] or "", change["column"] or "",
                    canonical_json(change["from"]), canonical_json(change["to"])])
    return "c-" + hashlib.sha256(key.encode("utf-8")).hexdigest()[:12]


def classify(changes: list[Change], old: Snapshot, new: Snapshot, *, strict: bool = False) -> list[Change]:
    """Each change with id, classification, reason, impact, matrix_row and summary added.
    In strict mode every change needs review; the reason keeps what the class would have been."""
    out = []
    for change in changes:
        classification, reason, row = _rule(change, old, new)
        if strict and classification == "safe":
            classification, reason = "review", f"strict mode (ETL_SCHEMA_STRICT_MODE=true); otherwise safe: {reason}"
        label, impact = IMPACT_ROWS[row]
        out.append({"id": change_id(change), "kind": change["kind"], "table": change["table"],
                    "column": change["column"], "from": change["from"], "to": change["to"],
                    "classification": classification, "reason": reason, "impact": dict(impact),
                    "matrix_row": label, "summary": _summary(change, old, new), "details": change["details"]})
    return out


def unknown_types(snap: Snapshot) -> list[dict[str, str]]:
    """Columns whose type the tool does not know, each with the type's name."""
    found = []
    for tname in sorted(snap["tables"]):
        for col in snap["tables"][tname]["columns"]:
            family = type_family(col, snap)
            if is_unknown(family):
                found.append({"table": tname, "column": col["name"], "type": col["type"],
                              "message": f"Unknown type: {_short(tname, col['name'])} has type {col['type']} "
                                         "(not in the type map; it needs a rule before it can be loaded)"})
    return found


def precision(changes: list[Change]) -> dict[str, Any]:
    """What the detector did not report on its own, so a reviewer can see nothing was hidden:
    `folded`, the changes that only follow another one (listed in its `details.folded`), and
    `suppressed`, the rename candidates not proposed (listed in the removed column's or
    table's `details.not_a_rename`), each by reason. `reported` is the number of changes."""
    folded: dict[str, int] = {}
    suppressed: dict[str, int] = {}
    for change in changes:
        for item in change["details"].get("folded", []):
            folded[item["reason"]] = folded.get(item["reason"], 0) + len(item["instead_of"])
        for item in change["details"].get("not_a_rename", []):
            reason = SUPPRESSED_REASONS[item["ruled_out_by"]]
            suppressed[reason] = suppressed.get(reason, 0) + 1
    return {"reported": len(changes), "folded": sum(folded.values()), "suppressed": sum(suppressed.values()),
            "folded_by_reason": dict(sorted(folded.items())), "suppressed_by_reason": dict(sorted(suppressed.items()))}


SUPPRESSED_REASONS = {"data evidence": "rename refuted by the data in MongoDB",
                      "structure": "rename ruled out: nullability, default, position or references differ"}


def detect_changes(old: Snapshot, new: Snapshot, *, strict: bool = False, evidence: Any = None) -> list[Change]:
    """diff + classify; `evidence` as for diff_snapshots."""
    return classify(diff_snapshots(old, new, evidence), old, new, strict=strict)
