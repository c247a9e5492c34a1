#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only
#
# Build the patched kernel for one config of configs/ (default: test).
# The config is tinyconfig plus the fragments the config file names with
# "gmem-include:" plus the file itself; every symbol the fragments ask for
# is checked in the result, so a dependency that silently drops an option
# fails the build instead of a test much later.
#
# Usage: build-kernel.sh [CONFIG] [--no-assemble] [--config-only] [--series-step]
#   --series-step  the tree is at a commit before the end of the series
#                  (checked out by hand, with --no-assemble): a symbol the
#                  fragments ask for that no Kconfig file of the tree
#                  declares yet is reported, not fatal.
# GMEM_KERNEL_PREBUILT=1: neither assemble nor build; use the kernel and
#   headers already in the build directory (for work on userspace while
#   someone else edits or builds the assembled tree).
# Output: $GMEM_CACHE/build/CONFIG/ (bzImage at arch/x86/boot/bzImage,
#         UAPI headers under usr/include)
set -euo pipefail
. "$(dirname "$0")/lib/lib.sh"

name="test"
assemble=1
config_only=0
series_step=0
for a in "$@"; do
	case "$a" in
	--no-assemble) assemble=0 ;;
	--config-only) config_only=1 ;;
	--series-step) series_step=1 ;;
	-*) die "build-kernel: unknown option $a" ;;
	*) name=$a ;;
	esac
done

cfgdir="$REPO_DIR/configs"
[ -f "$cfgdir/$name.config" ] || die "build-kernel: no configs/$name.config"

frags=()
add_frag() {
	local f=$1 inc
	# shellcheck disable=SC2013 # a gmem-include: line names several files
	for inc in $(sed -n 's/^# gmem-include: *//p' "$cfgdir/$f"); do
		case " ${frags[*]:-} " in *" $cfgdir/$inc "*) ;; *) add_frag "$inc" ;; esac
	done
	frags+=("$cfgdir/$f")
}
add_frag "$name.config"

if [ "${GMEM_KERNEL_PREBUILT:-0}" = 1 ]; then
	out=$(kbuild_dir "$name")
	if [ ! -f "$out/arch/x86/boot/bzImage" ] || [ ! -d "$out/usr/include" ]; then
		die "build-kernel[$name]: GMEM_KERNEL_PREBUILT=1 but $out has no built kernel"
	fi
	log "build-kernel[$name]: using the prebuilt $out/arch/x86/boot/bzImage"
	exit 0
fi

tree=$(ktree)
[ $assemble = 1 ] && "$HARNESS_DIR/assemble.sh" >/dev/null
out=$(kbuild_dir "$name")
mkdir -p "$out"

export CCACHE_DIR="$GMEM_CACHE/ccache"
export CCACHE_MAXSIZE=8G CCACHE_COMPRESS=1 CCACHE_BASEDIR="$tree"
export KBUILD_BUILD_TIMESTAMP="1970-01-01" KBUILD_BUILD_USER=gmem KBUILD_BUILD_HOST=gmem
mk=(make -C "$tree" O="$out" -j"$(nproc)" CC="ccache gcc" HOSTCC="ccache gcc" -s)

# Regenerate .config only when a fragment or a Kconfig file changed (a
# patch of the series may add or change symbols).
want=$( (cat "${frags[@]}"; git -C "$tree" ls-tree -r HEAD | grep -E '(/|\s)Kconfig[^/]*$') | sha256sum | cut -d' ' -f1)
if [ "$(cat "$out/.gmem-config" 2>/dev/null)" != "$want" ] || [ ! -f "$out/.config" ]; then
	log "build-kernel[$name]: configuring (tinyconfig + ${frags[*]##*/})"
	"${mk[@]}" tinyconfig >/dev/null
	(cd "$out" && KCONFIG_CONFIG=.config "$tree/scripts/kconfig/merge_config.sh" -m -O "$out" .config "${frags[@]}" >/dev/null)
	"${mk[@]}" olddefconfig >/dev/null
	# Check every request of the fragments (later fragments override).
	declare -A req=()
	while IFS= read -r line; do
		case "$line" in
		CONFIG_*=*) req[${line%%=*}]=${line#*=} ;;
		"# CONFIG_"*" is not set") s=${line#\# }; req[${s%% *}]=n ;;
		esac
	done < <(cat "${frags[@]}")
	bad=0
	for s in "${!req[@]}"; do
		v=${req[$s]}
		got=$(grep -E "^$s=|^# $s is not set" "$out/.config" | head -n 1 || true)
		case "$got" in
		"$s="*) got=${got#*=} ;;
		*) got=n ;;
		esac
		if [ "$got" != "$v" ] && [ $series_step = 1 ] && [ "$v" != n ] &&
			! git -C "$tree" grep -qE "^[[:space:]]*(menu)?config ${s#CONFIG_}\$" HEAD -- '*Kconfig*'; then
			echo "  $s: not in this tree yet (asked $v)" >&2
		elif [ "$got" != "$v" ]; then
			echo "  $s: asked $v, got $got" >&2
			bad=1
		fi
	done
	[ $bad = 0 ] || die "build-kernel[$name]: the config does not hold what configs/ asks for (see above: a missing dependency?)"
	echo "$want" >"$out/.gmem-config"
fi

[ $config_only = 1 ] && { log "build-kernel[$name]: $out/.config is ready"; exit 0; }
log "build-kernel[$name]: building in $out"
t0=$(date +%s)
"${mk[@]}" bzImage
if grep -q '^CONFIG_MODULES=y' "$out/.config"; then
	"${mk[@]}" modules
	rm -rf "$out/modroot"
	"${mk[@]}" INSTALL_MOD_PATH="$out/modroot" INSTALL_MOD_STRIP=1 modules_install >/dev/null
fi
"${mk[@]}" headers_install INSTALL_HDR_PATH="$out/usr" >/dev/null
log "build-kernel[$name]: done in $(($(date +%s) - t0)) s: $out/arch/x86/boot/bzImage"
