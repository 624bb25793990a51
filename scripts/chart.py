#!/usr/bin/env python3
"""Lints and renders charts/weir-operator with the Helm SDK (pip: helm-python-sdk).

Usage: scripts/chart.py OUT_DIR
       scripts/chart.py --values VALUES_JSON --namespace NS OUT_FILE

Lints the chart strictly (warnings fail), then renders it offline for two value sets and
writes each, CRDs first, as one multi-document YAML file into OUT_DIR: `cluster-wide.yaml` (default
values) and `namespaced.yaml` (watchNamespaces: [team-a, team-b], 2 replicas, the admission
policy on). Exits 1 on any
lint message of severity warning or error.

With --values, renders the chart once as `helm template weir charts/weir-operator -f VALUES_JSON
--namespace NS --include-crds` would, CRDs first, into OUT_FILE (what the end-to-end cluster test
applies with kubectl).
"""

import json
import pathlib
import sys

import helm_python as helm

CHART = pathlib.Path(__file__).resolve().parent.parent / "charts" / "weir-operator"

VALUE_SETS = {
    "cluster-wide": {},
    "namespaced": {
        "watchNamespaces": ["team-a", "team-b"],
        "replicas": 2,
        "admissionPolicy": {
            "enabled": True,
            "allowedImagePrefixes": ["registry.example.com/team-a/"],
            "allowedServiceAccounts": ["jobs"],
            "namespaceSelector": {"matchLabels": {"weir.dev/admission": "on"}},
        },
    },
}


def render(values: dict, namespace: str) -> tuple[list[str], int]:
    """The chart's documents (CRDs first) for `values`, and how many are CRD files."""
    chart = helm.Chart.load(str(CHART))
    rendered = chart.render(values, name="weir", namespace=namespace, is_install=True)
    docs = []
    for path in sorted(rendered):
        text = rendered[path].strip()
        if path.endswith(".yaml") and text:
            docs.append(f"# Source: {path}\n{text}")
    crds = [f"# Source: {c['filename']}\n{c['data'].strip()}" for c in chart.crds]
    return crds + docs, len(crds)


def main() -> int:
    if sys.argv[1] == "--values":
        values = json.loads(pathlib.Path(sys.argv[2]).read_text())
        assert sys.argv[3] == "--namespace", "usage: --values FILE --namespace NS OUT_FILE"
        docs, _ = render(values, sys.argv[4])
        pathlib.Path(sys.argv[5]).write_text("\n---\n".join(docs) + "\n")
        return 0
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
        docs, crds = render(values, "weir-system")
        (out / f"{name}.yaml").write_text("\n---\n".join(docs) + "\n")
        print(f"rendered {name}: {len(docs)} templates, {crds} CRD file(s) -> {out / (name + '.yaml')}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
