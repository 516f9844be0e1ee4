#!/usr/bin/env bash
# The krew archive of kubectl-mlrollout and its rendered manifest.
#
#   hack/krew/build.sh [RELEASE_URL]   # -> dist/krew/kubectl-mlrollout-VERSION.tar.gz + mlrollout.yaml
#
# The archive holds one executable, a Python zipapp (`#!/usr/bin/env python3`): the plugin
# (mlrollout.operator.plugin and the pure status model it reads), PyYAML's pure-Python modules for
# `-o yaml`, nothing compiled, so one archive serves linux and darwin. Byte-for-byte reproducible
# (sorted entries, fixed times), so the sha256 in the manifest is the archive's whatever machine
# builds it from the same sources. RELEASE_URL is where the archive will be downloaded from
# (default: the GitHub release of this version); the manifest's uri is RELEASE_URL/ARCHIVE.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$ROOT"
VERSION="$(sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)"
RELEASE_URL="${1:-https://github.com/mlrollout/mlrollout/releases/download/v$VERSION}"
OUT="${KREW_OUT:-$ROOT/dist/krew}"
ARCHIVE="kubectl-mlrollout-$VERSION.tar.gz"
PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"
[[ -x "$PYTHON" ]] || PYTHON=python3

stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
app="$stage/app"
mkdir -p "$app/mlrollout/operator" "$app/yaml" "$stage/pkg" "$OUT"
: > "$app/mlrollout/__init__.py"
cp operator/__init__.py operator/model.py "$app/mlrollout/operator/"
mkdir "$app/mlrollout/operator/plugin"
cp operator/plugin/*.py "$app/mlrollout/operator/plugin/"
yaml_dir="$("$PYTHON" -P -c 'import os, yaml; print(os.path.dirname(yaml.__file__))')"
cp "$yaml_dir"/*.py "$app/yaml/"   # the pure-Python PyYAML (its C speedups are optional)
cat > "$app/__main__.py" <<'PY'
import sys

from mlrollout.operator.plugin import main

sys.exit(main())
PY
# A fixed time on every entry (zip and tar), so the same sources give the same bytes.
find "$stage" -exec touch -h -d '2020-01-01T00:00:00Z' {} +
"$PYTHON" -P - "$app" "$stage/pkg/kubectl-mlrollout" <<'PY'
import os, sys, zipfile
app, target = sys.argv[1], sys.argv[2]
with open(target, "wb") as out:
    out.write(b"#!/usr/bin/env python3\n")
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for folder, dirs, files in sorted(os.walk(app)):
            dirs.sort()
            for name in sorted(files):
                path = os.path.join(folder, name)
                info = zipfile.ZipInfo(os.path.relpath(path, app), date_time=(2020, 1, 1, 0, 0, 0))
                info.external_attr = 0o644 << 16
                info.compress_type = zipfile.ZIP_DEFLATED
                zf.writestr(info, open(path, "rb").read())
os.chmod(target, 0o755)
PY
cat > "$stage/pkg/LICENSE" <<'TXT'
mlrollout is licensed under the Apache License, Version 2.0
(https://www.apache.org/licenses/LICENSE-2.0). The bundled PyYAML modules are MIT-licensed
(https://github.com/yaml/pyyaml/blob/main/LICENSE).
TXT
touch -h -d '2020-01-01T00:00:00Z' "$stage/pkg"/*
tar --sort=name --mtime='2020-01-01 00:00:00Z' --owner=0 --group=0 --numeric-owner \
  -C "$stage/pkg" -cf - kubectl-mlrollout LICENSE | gzip -n -9 > "$OUT/$ARCHIVE"
sha="$(sha256sum "$OUT/$ARCHIVE" | cut -d' ' -f1)"
sed -e "s|@VERSION@|$VERSION|g" -e "s|@URI@|$RELEASE_URL/$ARCHIVE|g" -e "s|@SHA256@|$sha|g" \
  -e '/^# The krew plugin manifest/,/^# For a custom index/d' hack/krew/mlrollout.yaml > "$OUT/mlrollout.yaml"
echo "$OUT/$ARCHIVE $sha"
echo "$OUT/mlrollout.yaml"
