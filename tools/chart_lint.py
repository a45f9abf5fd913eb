"""Lint the fast-note chart the way `ct lint` would, without ct.

    python -m tools.chart_lint                 # every check below; exit 1 if one fails
    python -m tools.chart_lint readme          # regenerate the chart README's Parameters section
    python -m tools.chart_lint install-readme-generator

Checks: `helm lint --strict` with Helm 3 and Helm 4 for every values file (values/*.yaml and the
chart's ci/*-values.yaml), yamllint with lintconf.yaml, yamale on Chart.yaml
(charts/chart_schema.yaml), and that the README's Parameters section matches values.yaml
(bitnami readme-generator-for-helm, installed pinned into .tools/node; needs node and npm).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from tools.fetch_tools import PINS

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "charts" / "fast-note"
HELMS = {"helm3": ROOT / ".tools" / "bin" / "helm3", "helm4": ROOT / ".tools" / "bin" / "helm4"}
LINTCONF = ROOT / "lintconf.yaml"
CHART_SCHEMA = ROOT / "charts" / "chart_schema.yaml"
README = CHART / "README.md"
VALUES = CHART / "values.yaml"

READMEGEN_PACKAGE = PINS["readme-generator"].package
READMEGEN_VERSION = PINS["readme-generator"].version
NODE_PREFIX = ROOT / ".tools" / "node"
READMEGEN_BIN = NODE_PREFIX / "node_modules" / ".bin" / "readme-generator"
READMEGEN_STAMP = NODE_PREFIX / f".readme-generator-{READMEGEN_VERSION}"


def values_files() -> list[Path]:
    """Every values file the chart must lint and render with: environments and ct's ci/ files."""
    return sorted((ROOT / "values").glob("*.yaml")) + sorted((CHART / "ci").glob("*-values.yaml"))


def yaml_files() -> list[Path]:
    """The YAML files yamllint checks (templates are Go templates, not YAML)."""
    files = [CHART / "Chart.yaml", VALUES, CHART_SCHEMA, LINTCONF, ROOT / "ct.yaml"]
    # the security scan's renders and accepted findings (tools/security_scan.py)
    files.append(CHART / "ci" / "security-scan-accepted.yaml")
    return files + values_files()


def helm_lint(helm: str, values: Path | None) -> tuple[bool, str]:
    """Run `helm lint --strict` on the chart with one values file; return (ok, output)."""
    cmd = [str(HELMS[helm]), "lint", "--strict", str(CHART)]
    if values is not None:
        cmd += ["-f", str(values)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    return proc.returncode == 0, proc.stdout + proc.stderr


def yamllint_problems() -> list[str]:
    """yamllint problems (errors and warnings) in the chart's YAML files, `path:line:col: ...`."""
    # yamllint and yamale ship no annotations
    from yamllint import linter  # type: ignore[import-untyped]
    from yamllint.config import YamlLintConfig  # type: ignore[import-untyped]

    conf = YamlLintConfig(file=str(LINTCONF))
    problems = []
    for path in yaml_files():
        for p in linter.run(path.read_text(), conf, str(path)):
            problems.append(
                f"{path.relative_to(ROOT)}:{p.line}:{p.column}: [{p.level}] {p.message}"
            )
    return problems


def yamale_problems(chart_yaml: Path | None = None) -> list[str]:
    """Problems of Chart.yaml against charts/chart_schema.yaml (strict: unknown keys fail)."""
    import yamale  # type: ignore[import-untyped]  # ships no annotations

    schema = yamale.make_schema(str(CHART_SCHEMA))
    data = yamale.make_data(str(chart_yaml or CHART / "Chart.yaml"))
    try:
        yamale.validate(schema, data, strict=True)
    except yamale.YamaleError as exc:
        return [err for result in exc.results for err in result.errors]
    return []


def readme_generator_missing() -> str | None:
    """Why the README drift check cannot run here (no node or npm), or None when it can."""
    for tool in ("node", "npm"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed: the README drift check needs node and npm"
    return None


def install_readme_generator() -> Path:
    """Install the pinned readme-generator-for-helm into .tools/node (once); return its binary."""
    if READMEGEN_STAMP.exists() and READMEGEN_BIN.exists():
        return READMEGEN_BIN
    reason = readme_generator_missing()
    if reason:
        raise RuntimeError(reason)
    NODE_PREFIX.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            "npm",
            "install",
            "--prefix",
            str(NODE_PREFIX),
            "--no-audit",
            "--no-fund",
            "--loglevel=error",
            f"{READMEGEN_PACKAGE}@{READMEGEN_VERSION}",
        ],
        check=True,
    )
    READMEGEN_STAMP.touch()
    return READMEGEN_BIN


def generate_readme(readme: Path, values: Path = VALUES) -> subprocess.CompletedProcess[str]:
    """Rewrite the Parameters section of `readme` from the `## @param` comments of `values`."""
    binary = install_readme_generator()
    return subprocess.run(
        [str(binary), "--values", str(values), "--readme", str(readme)],
        capture_output=True,
        text=True,
        check=False,
    )


def readme_drift(readme: Path = README, values: Path = VALUES) -> list[str]:
    """Diff between `readme` and what the generator makes of `values` (empty: in sync)."""
    import difflib

    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "README.md"
        copy.write_text(readme.read_text())
        proc = generate_readme(copy, values)
        if proc.returncode != 0:
            errors = [ln for ln in (proc.stdout + proc.stderr).splitlines() if "ERROR" in ln]
            return ["readme-generator rejected values.yaml metadata:", *errors]
        expected = copy.read_text()
    current = readme.read_text()
    return list(
        difflib.unified_diff(
            current.splitlines(),
            expected.splitlines(),
            "README.md (committed)",
            "README.md (generated)",
            lineterm="",
        )
    )


def checks() -> Iterator[tuple[str, bool, str]]:
    """Every lint check as (name, ok, details)."""
    for helm in HELMS:
        for values in values_files():
            ok, out = helm_lint(helm, values)
            yield f"{helm} lint --strict -f {values.relative_to(ROOT)}", ok, out
    problems = yamllint_problems()
    yield (
        f"yamllint -c lintconf.yaml ({len(yaml_files())} files)",
        not problems,
        "\n".join(problems),
    )
    problems = yamale_problems()
    yield "yamale Chart.yaml", not problems, "\n".join(problems)
    reason = readme_generator_missing()
    if reason and not READMEGEN_BIN.exists():
        yield f"README drift (skipped: {reason})", True, ""
    else:
        diff = readme_drift()
        yield (
            "README Parameters match values.yaml",
            not diff,
            "\n".join(diff) + "\nrun: make chart-readme",
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.chart_lint",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "action", nargs="?", default="lint", choices=["lint", "readme", "install-readme-generator"]
    )
    args = parser.parse_args(argv)
    if args.action == "install-readme-generator":
        print(install_readme_generator().relative_to(ROOT))
        return 0
    if args.action == "readme":
        proc = generate_readme(README)
        print(
            proc.stdout + proc.stderr if proc.returncode else f"updated {README.relative_to(ROOT)}"
        )
        return proc.returncode
    missing = [name for name, path in HELMS.items() if not path.exists()]
    if missing:
        print(f"missing {', '.join(missing)} in .tools/bin: run `make tools`", file=sys.stderr)
        return 2
    failed = 0
    for name, ok, details in checks():
        print(f"{'ok  ' if ok else 'FAIL'} {name}")
        if not ok:
            failed += 1
            print("     " + details.strip().replace("\n", "\n     "))
    print(f"chart lint: {failed} check(s) failed" if failed else "chart lint: all checks passed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
