#!/usr/bin/env bash
# Fetches the Apache Kafka broker the end-to-end tests start (pom.xml: kafka_2.13 and its runtime
# dependencies, from Maven Central) into $1/kafka-<version>/libs (default ~/.cache/weir-tools),
# with Maven's own cache in ~/.m2. Skips the fetch when a stamp file records that this pom.xml
# was fetched already. Cold: about a minute, downloads included.
set -euo pipefail
cd "$(dirname "$0")"
TOOLS="${1:-$HOME/.cache/weir-tools}"
VERSION="$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' pom.xml)"
DEST="$TOOLS/kafka-$VERSION"
STAMP="$DEST/.fetched-$(sha256sum pom.xml | cut -c1-16)"
[ -f "$STAMP" ] && exit 0
rm -rf "$DEST"
mkdir -p "$DEST/libs"
mvn -q -B org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy-dependencies \
  -DincludeScope=runtime -DoutputDirectory="$DEST/libs"
touch "$STAMP"
