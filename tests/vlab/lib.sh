# Shared by the tests/vlab scripts: paths, logging and failing with a message that says what to do.
# Sourced, not run.

VLAB_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_DIR="$(cd "$VLAB_DIR/../.." && pwd)"
# Everything the virtual lab builds or downloads lives here; .gitignore lists it.
CACHE_DIR="${VLAB_CACHE:-$REPO_DIR/.vlab-cache}"

log() { printf 'vlab: %s\n' "$*" >&2; }
die() { printf 'vlab: error: %s\n' "$*" >&2; exit 1; }

# need CMD PACKAGE: fail with the fix when a host tool is missing.
need() {
  command -v "$1" >/dev/null 2>&1 || die "'$1' is not installed; run 'make test-vlab' as root (it installs Debian package '$2') or 'apt-get install $2'."
}
