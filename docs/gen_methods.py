"""Write docs/methods/<method>.md, one page per registered method, from the method registry and docs/benchmarks.md.

Usage: .venv/bin/python docs/gen_methods.py [--check]

Each page: what the method is, its study (the reference), the protocol its study used, its settings with their
defaults and valid values (``--params``), what ``brainmri tune`` searches, the builder's own documentation (the
recipe and the figures it was tuned to), and the sections of docs/benchmarks.md that measure it. ``--check`` writes
nothing and exits 1 when a page differs (tests/test_docs.py runs it).
"""

from __future__ import annotations

import inspect
import json
import re
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
PAGES = DOCS / "methods"


def pages() -> dict[str, str]:
    from brainmri.models.catalog import available_methods, get_method

    benchmarks = (DOCS / "benchmarks.md").read_text(encoding="utf-8")
    made = {"index.md": _index([get_method(n) for n in available_methods()])}
    for name in available_methods():
        made[f"{name}.md"] = _page(get_method(name), benchmarks)
    return made


def _index(specs) -> str:
    rows = "\n".join(f"| [`{s.name}`]({s.name}.md) | {s.family} | {s.inputs} | {s.summary} |" for s in specs)
    return (
        "# Methods\n\nEvery method `brainmri benchmark --methods all` runs, one page each (generated from the method "
        "registry by `docs/gen_methods.py`).\n\n| method | family | inputs | what it is |\n|---|---|---|---|\n"
        f"{rows}\n"
    )


def _page(spec, benchmarks: str) -> str:
    from brainmri.models.registry import DEFAULT_CV

    parts = [f"# {spec.name}\n", f"{spec.summary}.\n", f"- family: {spec.family}; inputs: {spec.inputs}"]
    own = " (its study's protocol)" if spec.default_cv != DEFAULT_CV else ""
    parts.append(f"- `benchmark`'s default protocol: {spec.default_cv}-fold grouped cross-validation{own}")
    parts.append(f"- study: {spec.reference}\n")
    parts.append("## Settings (`--params " + spec.name + ".KEY=VALUE`)\n")
    parts.append("| setting | default | valid values |\n|---|---|---|")
    for key, default in spec.settings().items():
        rule = spec.rule(key)
        parts.append(f"| `{key}` | `{json.dumps(default, default=str)}` | {_rule(rule)} |")
    if spec.search_space:
        parts.append("\n## What `brainmri tune` searches\n\n| setting | space |\n|---|---|")
        for key, space in spec.search_space.items():
            parts.append(f"| `{key}` | `{json.dumps(space)}` |")
    doc = inspect.getdoc(spec.builder) or ""
    parts.append("\n## The recipe\n\n```text\n" + doc + "\n```")
    sections = _measured_in(spec.name, benchmarks)
    if sections:
        parts.append("\n## Measured in the results\n")
        parts += [f"- [{title}](../benchmarks.md#{anchor})" for title, anchor in sections]
    return "\n".join(parts) + "\n"


def _rule(rule) -> str:
    if rule is None:
        return "any"
    kinds = []
    if rule.number:
        low = "" if rule.low is None else f"{'>' if rule.low_open else '>='} {rule.low}"
        high = "" if rule.high is None else f"{'<' if rule.high_open else '<='} {rule.high}"
        kinds.append(" and ".join(x for x in (f"{rule.number} {low}".strip(), high) if x))
    kinds += [f"`{w}`" for w in rule.words]
    kinds += ["true/false"] if rule.boolean else []
    kinds += ["null"] if rule.none else []
    kinds += ["a list of positive integers"] if rule.ints else []
    kinds += ["text"] if getattr(rule, "text", False) else []
    return ", ".join(kinds) or "any"


def _measured_in(name: str, benchmarks: str) -> list[tuple[str, str]]:
    """The headings of docs/benchmarks.md whose section names the method in backticks, with their anchors."""
    found, heading = [], None
    for line in benchmarks.splitlines():
        match = re.match(r"^#{2,3} (.+)$", line)
        if match:
            heading = match.group(1).strip()
            continue
        if heading and f"`{name}`" in line and (not found or found[-1][0] != heading):
            found.append((heading, _anchor(heading)))
    return found


def _anchor(heading: str) -> str:
    """The anchor Python-Markdown's toc extension gives ``heading``."""
    text = re.sub(r"[^\w\s-]", "", heading.lower().replace("`", ""))
    return re.sub(r"[-\s]+", "-", text).strip("-")


def main() -> int:
    made = pages()
    if "--check" in sys.argv[1:]:
        stale = [n for n, text in made.items() if not (PAGES / n).exists() or (PAGES / n).read_text() != text]
        stale += [p.name for p in PAGES.glob("*.md") if p.name not in made]
        if stale:
            print(f"{PAGES}: stale pages {', '.join(stale)}: run .venv/bin/python docs/gen_methods.py", file=sys.stderr)
            return 1
        return 0
    PAGES.mkdir(exist_ok=True)
    for old in PAGES.glob("*.md"):
        if old.name not in made:
            old.unlink()
    for name, text in made.items():
        (PAGES / name).write_text(text, encoding="utf-8")
    print(f"wrote {len(made)} pages in {PAGES}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
