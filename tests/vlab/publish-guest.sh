#!/usr/bin/env bash
# Publishes the guest program and the fpgaaccel tool (self-contained, trimmed, single-file, ReadyToRun:
# the JIT is slow under TCG) into the cache, for the virtual lab and the virtual board alike. They are
# republished only when a source they are built from changed. Prints the folder on stdout.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

DOTNET=${DOTNET:-dotnet}
guest="$CACHE_DIR/guest"
sources_hash=$(cd "$REPO_DIR" &&
  find interop firmware-iface hw-sim driver tests/FpgaAccel.VlabGuest Directory.Build.props Directory.Packages.props \
    -type f \( -name '*.cs' -o -name '*.csproj' -o -name '*.props' -o -name '*.targets' \) \
    -not -path '*/bin/*' -not -path '*/obj/*' -print0 | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum | cut -c1-16)
if [ "$(cat "$guest/.sources" 2>/dev/null)" != "$sources_hash" ] || [ ! -x "$guest/vlab-guest" ] || [ ! -x "$guest/fpgaaccel" ]; then
  rm -rf "$guest"
  for project in tests/FpgaAccel.VlabGuest/FpgaAccel.VlabGuest.csproj driver/FpgaAccel.Cli/FpgaAccel.Cli.csproj; do
    log "publishing $project (self-contained, trimmed, single-file, ReadyToRun, linux-x64)"
    (cd "$REPO_DIR" && timeout 900 "$DOTNET" publish "$project" -c Release -r linux-x64 --self-contained \
        -p:PublishTrimmed=true -p:PublishSingleFile=true -p:PublishReadyToRun=true \
        -p:DebugType=none -p:GenerateDocumentationFile=false -o "$guest" -v quiet -nologo) >&2 \
      || die "dotnet publish $project failed (see above)."
  done
  echo "$sources_hash" > "$guest/.sources"
fi
echo "$guest"
