#!/bin/sh
# Refresh the vendored UI library from npm: Preact (with its hooks) and htm, served by the hub itself
# to the agent console and the web chat widget (no CDN, no Node at run time, no build step).
# Usage: web/static/vendor/refresh.sh [preact-version] [htm-version]   (default: the pinned ones)
# Review the diff, then run tests/test_browser.py (a real Chromium) before committing.
#
# The one change: the hooks module imports "preact" by its bare name, which a browser resolves only
# with an import map; it is rewritten to the file next to it ("./preact.mjs").
set -eu

PREACT="${1:-11.2.0}"
HTM="${2:-3.1.1}"
HERE="$(cd "$(dirname "$0")" && pwd)"
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

cd "$TMP"
npm pack --silent "preact@$PREACT" "htm@$HTM" >/dev/null
mkdir preact htm
tar -xzf "preact-$PREACT.tgz" -C preact --strip-components=1 package/dist/preact.mjs package/hooks/dist/hooks.mjs package/LICENSE
tar -xzf "htm-$HTM.tgz" -C htm --strip-components=1 package/dist/htm.mjs package/LICENSE

sed 's#from"preact"#from"./preact.mjs"#g; s#from "preact"#from "./preact.mjs"#g' preact/hooks/dist/hooks.mjs > hooks.mjs
if grep -q 'from *"preact' hooks.mjs; then
    echo "preact $PREACT's hooks still import a bare name after the rewrite; look before vendoring" >&2
    exit 1
fi
cp preact/dist/preact.mjs "$HERE/preact.mjs"
cp hooks.mjs "$HERE/hooks.mjs"
cp htm/dist/htm.mjs "$HERE/htm.mjs"
cp preact/LICENSE "$HERE/LICENSE.preact"
cp htm/LICENSE "$HERE/LICENSE.htm"
{
    printf 'preact %s npm-tarball-sha256 %s\n' "$PREACT" "$(sha256sum "preact-$PREACT.tgz" | cut -d' ' -f1)"
    printf 'htm %s npm-tarball-sha256 %s\n' "$HTM" "$(sha256sum "htm-$HTM.tgz" | cut -d' ' -f1)"
    printf 'patch hooks.mjs imports "./preact.mjs" instead of "preact" (see refresh.sh)\n'
    for f in preact.mjs hooks.mjs htm.mjs; do printf 'sha256 %s %s\n' "$f" "$(sha256sum "$HERE/$f" | cut -d' ' -f1)"; done
} > "$HERE/VERSION"
echo "vendored preact $PREACT and htm $HTM into $HERE"
