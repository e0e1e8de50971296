#!/bin/sh
# Refresh the vendored UI library from npm: Preact (with its hooks) and htm, served by the hub itself
# to the agent console and the web chat widget, and Chart.js (its self-contained UMD build), which the
# console's Reports page draws with (no CDN, no Node at run time, no build step).
# Usage: web/static/vendor/refresh.sh [preact-version] [htm-version] [chart.js-version]
#        (default: the pinned ones)
# Review the diff, then run tests/test_browser.py and tests/test_reports_page.py (a real Chromium)
# before committing.
#
# The changes: the hooks module imports "preact" by its bare name, which a browser resolves only
# with an import map; it is rewritten to the file next to it ("./preact.mjs"). Chart.js's last line
# names a source map we do not ship; it is dropped.
set -eu

PREACT="${1:-11.2.0}"
HTM="${2:-3.1.1}"
CHARTJS="${3:-4.6.2}"
HERE="$(cd "$(dirname "$0")" && pwd)"
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

cd "$TMP"
npm pack --silent "preact@$PREACT" "htm@$HTM" "chart.js@$CHARTJS" >/dev/null
mkdir preact htm chartjs
tar -xzf "preact-$PREACT.tgz" -C preact --strip-components=1 package/dist/preact.mjs package/hooks/dist/hooks.mjs package/LICENSE
tar -xzf "htm-$HTM.tgz" -C htm --strip-components=1 package/dist/htm.mjs package/LICENSE
tar -xzf "chart.js-$CHARTJS.tgz" -C chartjs --strip-components=1 package/dist/chart.umd.min.js package/LICENSE.md

sed 's#from"preact"#from"./preact.mjs"#g; s#from "preact"#from "./preact.mjs"#g' preact/hooks/dist/hooks.mjs > hooks.mjs
if grep -q 'from *"preact' hooks.mjs; then
    echo "preact $PREACT's hooks still import a bare name after the rewrite; look before vendoring" >&2
    exit 1
fi
grep -v '^//# sourceMappingURL=' chartjs/dist/chart.umd.min.js > chart.umd.js
if ! grep -q "Chart.js v$CHARTJS" chart.umd.js; then
    echo "chart.js $CHARTJS's UMD build does not name its version; look before vendoring" >&2
    exit 1
fi
cp preact/dist/preact.mjs "$HERE/preact.mjs"
cp hooks.mjs "$HERE/hooks.mjs"
cp htm/dist/htm.mjs "$HERE/htm.mjs"
cp preact/LICENSE "$HERE/LICENSE.preact"
cp htm/LICENSE "$HERE/LICENSE.htm"
cp chart.umd.js "$HERE/chart.umd.js"
cp chartjs/LICENSE.md "$HERE/LICENSE.chartjs"
{
    printf 'preact %s npm-tarball-sha256 %s\n' "$PREACT" "$(sha256sum "preact-$PREACT.tgz" | cut -d' ' -f1)"
    printf 'htm %s npm-tarball-sha256 %s\n' "$HTM" "$(sha256sum "htm-$HTM.tgz" | cut -d' ' -f1)"
    printf 'chart.js %s npm-tarball-sha256 %s\n' "$CHARTJS" "$(sha256sum "chart.js-$CHARTJS.tgz" | cut -d' ' -f1)"
    printf 'patch hooks.mjs imports "./preact.mjs" instead of "preact" (see refresh.sh)\n'
    printf 'patch chart.umd.js is dist/chart.umd.min.js without its sourceMappingURL line (see refresh.sh)\n'
    for f in preact.mjs hooks.mjs htm.mjs chart.umd.js; do printf 'sha256 %s %s\n' "$f" "$(sha256sum "$HERE/$f" | cut -d' ' -f1)"; done
} > "$HERE/VERSION"
echo "vendored preact $PREACT, htm $HTM and chart.js $CHARTJS into $HERE"
