#!/bin/sh
# Install the front-end libraries from the npm registry (package-lock.json pins them)
# and copy the built files the pages use into src/minyun/web/static/vendor/ (gitignored).
# Safe to run again: npm ci starts from a clean node_modules and the copy replaces the old one.
set -eu

cd "$(dirname "$0")/.."
VENDOR=src/minyun/web/static/vendor

npm ci --no-audit --no-fund

rm -rf "$VENDOR.tmp"
mkdir -p "$VENDOR.tmp"
cp node_modules/htmx.org/dist/htmx.min.js "$VENDOR.tmp/htmx.min.js"
cp node_modules/echarts/dist/echarts.min.js "$VENDOR.tmp/echarts.min.js"
mkdir -p "$VENDOR.tmp/leaflet"
cp -R node_modules/leaflet/dist/. "$VENDOR.tmp/leaflet/"
rm -rf "$VENDOR"
mv "$VENDOR.tmp" "$VENDOR"
echo "vendored: $(ls "$VENDOR" | tr '\n' ' ')"
