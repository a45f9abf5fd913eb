"""The chart's Artifact Hub annotations that are derived from other files.

    python -m tools.chart_metadata            # print what Chart.yaml's derived annotations must be
    python -m tools.chart_metadata --write    # rewrite them in charts/fast-note/Chart.yaml

- `artifacthub.io/changes`: CHANGELOG.md's section for the chart's `version` (Keep a Changelog
  headings become Artifact Hub kinds, one change per bullet).
- `artifacthub.io/images`: the app and migrator images values.yaml deploys by default, at the
  chart's appVersion.

tests/chart/test_chart_metadata.py fails when Chart.yaml and these differ.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any

import yaml  # type: ignore[import-untyped]  # no stubs in .venv

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "charts" / "fast-note"
CHART_YAML = CHART / "Chart.yaml"
CHANGELOG = ROOT / "CHANGELOG.md"
# Keep a Changelog's headings and the kinds Artifact Hub knows.
KINDS = {
    "Added": "added",
    "Changed": "changed",
    "Deprecated": "deprecated",
    "Removed": "removed",
    "Fixed": "fixed",
    "Security": "security",
}
DERIVED = ("artifacthub.io/changes", "artifacthub.io/images")


class MetadataError(Exception):
    """A source file does not hold what the annotations are made from."""


def changelog_section(version: str, text: str) -> str:
    """The body of CHANGELOG's `## [version]` section (up to the next `## ` heading)."""
    match = re.search(rf"^## \[{re.escape(version)}\][^\n]*\n(.*?)(?=^## |\Z)", text, re.M | re.S)
    if match is None:
        raise MetadataError(
            f"CHANGELOG.md has no section `## [{version}]` for the chart's version\n"
            f"what to do: add it (move the Unreleased entries under it when releasing {version})"
        )
    return match.group(1)


def changes(version: str, text: str) -> list[dict[str, str]]:
    """Artifact Hub's changes for `version`: one {kind, description} per changelog bullet."""
    found: list[dict[str, str]] = []
    kind = ""
    for line in changelog_section(version, text).splitlines():
        if line.startswith("### "):
            heading = line[4:].strip()
            if heading not in KINDS:
                raise MetadataError(
                    f"CHANGELOG.md [{version}]: unknown heading `### {heading}`\n"
                    f"what to do: use one of {', '.join(KINDS)}"
                )
            kind = KINDS[heading]
        elif line.startswith("- ") and kind:
            found.append({"kind": kind, "description": line[2:].strip()})
        elif line.startswith("  ") and line.strip() and found:
            found[-1]["description"] += " " + line.strip()
    return found


def image_reference(image: dict[str, Any], app_version: str, global_registry: str = "") -> str:
    """The reference a values `image` block deploys (as the chart's image helper writes it)."""
    registry = str(global_registry or image.get("registry") or "").rstrip("/")
    name = f"{registry}/{image['repository']}" if registry else str(image["repository"])
    if image.get("digest"):
        return f"{name}@{image['digest']}"
    return f"{name}:{image.get('tag') or app_version}"


def images(values: dict[str, Any], app_version: str) -> list[dict[str, str]]:
    """Artifact Hub's images: the app and the migrator image of the default values."""
    registry = str((values.get("global") or {}).get("imageRegistry") or "")
    found = []
    for image in (values["image"], values["migration"]["image"]):
        found.append(
            {
                "name": str(image["repository"]).rsplit("/", 1)[-1],
                "image": image_reference(image, app_version, registry),
            }
        )
    return found


def expected() -> dict[str, list[dict[str, str]]]:
    """The derived annotations, parsed (what Chart.yaml's must equal)."""
    chart = yaml.safe_load(CHART_YAML.read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    return {
        "artifacthub.io/changes": changes(str(chart["version"]), CHANGELOG.read_text()),
        "artifacthub.io/images": images(values, str(chart["appVersion"])),
    }


def _block(key: str, items: list[dict[str, str]]) -> str:
    body = yaml.safe_dump(items, sort_keys=False, allow_unicode=True, width=10_000)
    return f"  {key}: |\n" + "".join(f"    {line}\n" for line in body.splitlines())


def write(chart_yaml: Path = CHART_YAML) -> bool:
    """Rewrite the derived annotations in `chart_yaml`; True if the file changed."""
    text = chart_yaml.read_text()
    new = text
    for key, items in expected().items():
        found = re.search(rf"^  {re.escape(key)}: \|\n(?:    .*\n|\n)*", new, re.M)
        if found is None:
            raise MetadataError(
                f"{chart_yaml.name}: no `{key}: |` block under annotations\n"
                f"what to do: add `  {key}: |` (an empty block) under `annotations:`"
            )
        new = new[: found.start()] + _block(key, items) + new[found.end() :]
    if new != text:
        chart_yaml.write_text(new)
    return new != text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.chart_metadata",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--write", action="store_true", help="rewrite them in Chart.yaml")
    args = parser.parse_args(argv)
    try:
        if args.write:
            changed = write()
            print(f"{CHART_YAML.relative_to(ROOT)}: {'updated' if changed else 'up to date'}")
        else:
            print("annotations:\n" + "".join(_block(k, v) for k, v in expected().items()), end="")
    except MetadataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
