#!/bin/sh
# Refresh the vendored Redoc bundle from npm: the hub serves it itself (no CDN, no Node at run time).
# Usage: admin_api/static/apidocs/refresh.sh [version]   (default: the pinned one below)
# Review the diff, then run tests/test_api_docs.py (a real Chromium records every request the page
# makes) before committing.
#
# Why 2.x: Redoc 3.0.1 also sends telemetry to otel.cloud.redocly.com unless told not to, and its
# bundle names icon sets on cdn.redocly.com; 2.5.x makes no request of its own but one, below.
#
# The one patch: every Redoc release (2.1 to 3.0 checked) shows the attribution "API docs by
# Redocly" with an <img> loaded from cdn.redoc.ly, and no option turns it off. We point that image
# at "data:," instead: it fails to decode, Redoc's own onError hides it, and the attribution stays
# as text with its link. Without the patch every reader's browser would call a third party.
set -eu

VERSION="${1:-2.5.4}"
HERE="$(cd "$(dirname "$0")" && pwd)"
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

cd "$TMP"
npm pack --silent "redoc@$VERSION" >/dev/null
TARBALL_SHA="$(sha256sum "redoc-$VERSION.tgz" | cut -d' ' -f1)"
# Only the standalone bundle and the licences (Redoc's, and those of what the bundle includes):
# nothing else of the package is served.
tar -xzf "redoc-$VERSION.tgz" package/bundles/redoc.standalone.js package/LICENSE
tar -xzf "redoc-$VERSION.tgz" package/bundles/redoc.standalone.js.LICENSE.txt 2>/dev/null || true

BUNDLE=package/bundles/redoc.standalone.js
sed -i 's#"https://cdn\.redoc\.ly/redoc/[A-Za-z0-9._-]*\.svg"#"data:,"#g' "$BUNDLE"
if grep -q 'cdn\.redoc\.ly\|cdn\.redocly\.com\|fonts\.googleapis' "$BUNDLE"; then
    echo "redoc $VERSION still names a CDN after the patch; look before vendoring it:" >&2
    grep -o '.\{60\}\(cdn\.redoc\.ly\|cdn\.redocly\.com\|fonts\.googleapis\).\{60\}' "$BUNDLE" >&2
    exit 1
fi

cp "$BUNDLE" "$HERE/redoc.standalone.js"
cp package/LICENSE "$HERE/LICENSE"
if [ -f package/bundles/redoc.standalone.js.LICENSE.txt ]; then
    cp package/bundles/redoc.standalone.js.LICENSE.txt "$HERE/redoc.standalone.js.LICENSE.txt"
else
    rm -f "$HERE/redoc.standalone.js.LICENSE.txt"
fi
{
    printf 'redoc %s\n' "$VERSION"
    printf 'npm-tarball-sha256 %s\n' "$TARBALL_SHA"
    printf 'patch cdn.redoc.ly logo image -> data:, (see refresh.sh)\n'
    printf 'sha256 %s\n' "$(sha256sum "$HERE/redoc.standalone.js" | cut -d' ' -f1)"
} > "$HERE/VERSION"
echo "vendored redoc $VERSION into $HERE"
