#!/usr/bin/env python3
"""Lints and renders charts/weir-operator with the Helm SDK (pip: helm-python-sdk).

Usage: scripts/chart.py OUT_DIR

Lints the chart strictly (warnings fail), then renders it offline for two value sets and
writes each, CRDs first, as one multi-document YAML file into OUT_DIR: `cluster-wide.yaml` (default
values) and `namespaced.yaml` (watchNamespaces: [team-a, team-b], 2 replicas). Exits 1 on any
lint message of severity warning or error.
"""

import pathlib
import sys

import helm_python as helm

CHART = pathlib.Path(__file__).resolve().parent.parent / "charts" / "weir-operator"

VALUE_SETS = {
    "cluster-wide": {},
    "namespaced": {"watchNamespaces": ["team-a", "team-b"], "replicas": 2},
}


def main() -> int:
    out = pathlib.Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    failed = False
    for name, values in VALUE_SETS.items():
        report = helm.lint(str(CHART), values, strict=True, namespace="weir-system")
        for m in report.get("messages") or []:
            print(f"lint ({name}): severity {m.get('severity')} {m.get('path')}: {m.get('error')}")
            failed |= (m.get("severity") or 0) >= 2
        for e in report.get("errors") or []:
            print(f"lint ({name}): {e}")
            failed = True
        chart = helm.Chart.load(str(CHART))
        rendered = chart.render(values, name="weir", namespace="weir-system", is_install=True)
        docs = []
        for path in sorted(rendered):
            text = rendered[path].strip()
            if path.endswith(".yaml") and text:
                docs.append(f"# Source: {path}\n{text}")
        crds = [f"# Source: {c['filename']}\n{c['data'].strip()}" for c in chart.crds]
        docs = crds + docs
        (out / f"{name}.yaml").write_text("\n---\n".join(docs) + "\n")
        print(f"rendered {name}: {len(docs)} templates, {len(crds)} CRD file(s) -> {out / (name + '.yaml')}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
