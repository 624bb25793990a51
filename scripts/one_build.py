"""Compares two `cargo --message-format=json` outputs: FIRST (the README's first command) and
SECOND (its test command, run right after). Every unit FIRST built must reach SECOND unchanged:
the same library files (their names carry Cargo's hash of features and dependencies), the same
build-script output directory, binaries not recompiled. Prints each unit that differs with the
features of both builds; exit 1 if any does, 0 otherwise."""

import json
import sys


def units(path):
    """Every unit's message as (package_id, target name, kinds, message), plus the set of every
    file and out dir. A package can have two units of one target: for build scripts and
    proc-macros (host) and for the binary (target), with different features."""
    found, files = [], set()
    with open(path) as f:
        for line in f:
            if not line.startswith("{"):
                continue
            msg = json.loads(line)
            if msg.get("reason") == "compiler-artifact":
                key = (msg["package_id"], msg["target"]["name"], tuple(msg["target"]["kind"]))
                found.append((*key, msg))
                files.update(msg["filenames"])
            elif msg.get("reason") == "build-script-executed":
                found.append((msg["package_id"], "build-script-run", (), msg))
                files.add(msg["out_dir"])
    return found, files


def features_by_package(units_):
    """package_id -> the feature sets (comma-joined) its units were built with."""
    found = {}
    for pkg, _, _, msg in units_:
        if "features" in msg:
            found.setdefault(pkg, set()).add(",".join(msg["features"]) or "(none)")
    return found


def name(package_id):
    # "registry+https://...#tokio@1.54.1" or "path+file:///...#weir-runtime@0.1.0"
    return package_id.rsplit("#", 1)[-1]


def main(first_path, second_path):
    first, _ = units(first_path)
    second, second_files = units(second_path)
    by_package = features_by_package(second)
    fresh_bins = {(pkg, target) for pkg, target, kinds, msg in second
                  if "bin" in kinds and msg["fresh"]}
    problems = []
    for pkg, target, kinds, msg in first:
        if target == "build-script-run":
            same = msg["out_dir"] in second_files
        elif "bin" in kinds:
            same = (pkg, target) in fresh_bins
        else:
            same = all(f in second_files for f in msg["filenames"])
        if not same:
            problems.append(
                f"{name(pkg)} ({target}): first command features [{','.join(msg.get('features', []))}]"
                f", test command [{' | '.join(sorted(by_package.get(pkg, {'?'})))}]"
            )
    if problems:
        print("The README's test command builds again what its first command built:")
        for p in problems:
            print("  " + p)
        # The causes: packages the test command also builds with features the first command
        # never used (everything that depends on them is then built twice).
        first_features = features_by_package(first)
        print("Caused by (features the test command adds):")
        for pkg in sorted(first_features):
            extra = by_package.get(pkg, set()) - first_features[pkg]
            if extra:
                print(f"  {name(pkg)}: first command [{' | '.join(sorted(first_features[pkg]))}]"
                      f", test command also [{' | '.join(sorted(extra))}]")
        print("Add the test command's features to runtime/feature-pins/Cargo.toml.")
        return 1
    print(f"one build: all {len(first)} units of the first command reused by the test command")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
