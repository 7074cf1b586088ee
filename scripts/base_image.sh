#!/usr/bin/env bash
# Create the base image the Dockerfile's FROM names (debian:bookworm-slim) without a registry:
# debootstrap a minimal Debian bookworm and `podman import` it under that name.
#
#   scripts/base_image.sh            # create it unless it already exists (cached between steps)
#   scripts/base_image.sh --force    # recreate it
#
# Needs root and Debian's `podman runc debootstrap`. Env:
#   BASE_IMAGE        image name to create (default debian:bookworm-slim)
#   DEBIAN_MIRROR     mirror for debootstrap (default http://deb.debian.org/debian)
#   CONTAINERS_CONF   defaults to image/containers.conf of this repository
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export CONTAINERS_CONF="${CONTAINERS_CONF:-$here/image/containers.conf}"
BASE_IMAGE="${BASE_IMAGE:-debian:bookworm-slim}"
force=0
[[ "${1:-}" == "--force" ]] && force=1

podman=(podman --runtime runc)

if [[ $force == 0 ]] && "${podman[@]}" image exists "$BASE_IMAGE"; then
  echo "base image $BASE_IMAGE exists; skipping (use --force to recreate)"
  exit 0
fi

for tool in podman runc debootstrap; do
  command -v "$tool" >/dev/null || { echo "error: $tool is missing (apt-get install podman runc catatonit debootstrap)" >&2; exit 2; }
done

mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"

work="$(mktemp -d /tmp/kokoro-base.XXXXXX)"
trap 'rm -rf "$work"' EXIT
echo "debootstrap --variant=minbase bookworm from $mirror"
start=$(date +%s)
debootstrap --variant=minbase bookworm "$work/root" "$mirror" >"$work/debootstrap.log" 2>&1 || {
  tail -n 40 "$work/debootstrap.log" >&2; exit 1; }

# Slim it the way debian:*-slim is: no docs, man pages or apt lists; apt keeps none of its downloads.
root="$work/root"
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb \
       "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/* "$root"/usr/share/locale/* \
       "$root"/var/log/*.log
mkdir -p "$root/etc/dpkg/dpkg.cfg.d" "$root/etc/apt/apt.conf.d"
cat >"$root/etc/dpkg/dpkg.cfg.d/docker" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
EOF
cat >"$root/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache ""; Dir::Cache::srcpkgcache "";
Acquire::GzipIndexes "true";
EOF
# sources.list: the mirror debootstrap used (keep main only, as the slim image does)
echo "deb $mirror bookworm main" >"$root/etc/apt/sources.list"

tar --numeric-owner -C "$root" -c . \
  | "${podman[@]}" import --change 'CMD ["bash"]' \
      --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
      --change 'ENV LANG=C.UTF-8' - "$BASE_IMAGE" >/dev/null
echo "created $BASE_IMAGE in $(( $(date +%s) - start )) s: $("${podman[@]}" image inspect "$BASE_IMAGE" --format '{{.Size}}') bytes"
