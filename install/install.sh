#!/usr/bin/env bash
# downshiftarr installer: puts the shim in place of Plex Transcoder, keeps the real one beside
# it, and keeps protecting across Plex updates.
#
#   install.sh [--plex-dir DIR] [--bin-dir DIR] [--root DIR] [--dry-run] [--force]
#   install.sh --uninstall [--purge] [...]
#
# - Finds Plex in /usr/lib/plexmediaserver, /usr/lib64/plexmediaserver or Synology's
#   /volume1/@appstore/PlexMediaServer (or --plex-dir), and says what it found.
# - On dpkg systems the real binary is moved aside with dpkg-divert, so later plexmediaserver
#   packages install their new transcoder under the diverted name; elsewhere it is renamed.
# - Our shim is recognised by a marker string inside it, never by a hash: re-running is a
#   no-op, an upgrade replaces only the shim, a genuine Plex binary found at the transcoder
#   path is always treated as the new original.
# - --root DIR operates on a directory tree instead of / and never touches the host's
#   systemd or packages (an isolated dpkg database inside DIR is used if there is one).
# - --uninstall restores the original byte for byte (its checksum is recorded at install time
#   and verified) and keeps config and state unless --purge.
set -Eeuo pipefail
# A step that fails unexpectedly says which one, instead of ending the script without a word.
trap 'printf "downshiftarr: error: install.sh line %s failed (exit %s): %s; nothing after it was done, run it again with --dry-run to see the remaining steps\n" "$LINENO" "$?" "$BASH_COMMAND" >&2' ERR

MARKER="downshiftarr-shim-marker:v1"
REAL_SUFFIX=".downshiftarr-real"
ROOT=""
PLEX_DIR=""
BIN_DIR=""
DRY_RUN=0
FORCE=0
UNINSTALL=0
PURGE=0
NO_SYSTEMD=0

say() { printf 'downshiftarr: %s\n' "$*"; }
die() { printf 'downshiftarr: error: %s\n' "$*" >&2; exit 1; }
usage() { sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }

while (($#)); do
  case "$1" in
    --plex-dir) PLEX_DIR=${2:?--plex-dir needs a directory}; shift 2 ;;
    --bin-dir) BIN_DIR=${2:?--bin-dir needs a directory}; shift 2 ;;
    --root) ROOT=${2:?--root needs a directory}; shift 2 ;;
    --dry-run) DRY_RUN=1; shift ;;
    --force) FORCE=1; shift ;;
    --uninstall) UNINSTALL=1; shift ;;
    --purge) PURGE=1; shift ;;
    --no-systemd) NO_SYSTEMD=1; shift ;;
    -h|--help) usage 0 ;;
    *) printf 'downshiftarr: unknown option %s\n' "$1" >&2; usage 2 ;;
  esac
done
((PURGE == 0 || UNINSTALL == 1)) || die "--purge goes with --uninstall"
if [[ -n $ROOT ]]; then
  [[ -d $ROOT ]] || die "--root $ROOT is not a directory"
  ROOT=$(cd "$ROOT" && pwd)
  NO_SYSTEMD=1
fi
[[ $DRY_RUN == 1 || $(id -u) == 0 || -n $ROOT ]] || die "run as root (or with --dry-run)"

# Every change goes through `run`, so --dry-run shows exactly what would happen.
run() {
  if ((DRY_RUN)); then
    printf '+'; printf ' %q' "$@"; printf '\n'
  else
    "$@"
  fi
}

LIB_DIR="$ROOT/usr/lib/downshiftarr"
BIN_LINK="$ROOT/usr/local/bin/downshiftarr"
ETC_DIR="$ROOT/etc/downshiftarr"
STATE_DIR="$ROOT/var/lib/downshiftarr"
LOG_DIR="$ROOT/var/log/downshiftarr"
UNIT="$ROOT/etc/systemd/system/downshiftarr.service"
SRC_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

# --- where Plex is -----------------------------------------------------------------------
find_plex() {
  if [[ -n $PLEX_DIR ]]; then
    [[ -d $ROOT$PLEX_DIR ]] || die "--plex-dir $PLEX_DIR does not exist${ROOT:+ under $ROOT}"
    return
  fi
  local d
  for d in /usr/lib/plexmediaserver /usr/lib64/plexmediaserver /volume1/@appstore/PlexMediaServer "/volume1/@appstore/Plex Media Server"; do
    if [[ -e "$ROOT$d/Plex Transcoder" || -e "$ROOT$d/Plex Transcoder$REAL_SUFFIX" ]]; then
      PLEX_DIR=$d
      return
    fi
  done
  die "no Plex Media Server found (looked in /usr/lib/plexmediaserver, /usr/lib64/plexmediaserver, /volume1/@appstore/PlexMediaServer${ROOT:+ under $ROOT}); give --plex-dir"
}
find_plex
TRANSCODER="$ROOT$PLEX_DIR/Plex Transcoder"
REAL="$TRANSCODER$REAL_SUFFIX"
say "Plex found in ${ROOT}${PLEX_DIR}"

# --- what is at a path: missing | shim | genuine | other -----------------------------------
kind_of() {
  local p=$1
  if [[ ! -e $p ]]; then echo missing
  elif grep -qaF "$MARKER" "$p"; then echo shim
  elif [[ -x $p ]] && { [[ $(head -c4 "$p" | od -An -c | tr -d ' ') == '177ELF' ]] || [[ $(head -c2 "$p") == '#!' ]]; }; then echo genuine
  else echo other
  fi
}

# --- dpkg: is the transcoder owned by a package, in which database? -------------------------
DPKG_ROOT_ARGS=()
dpkg_owned() {
  command -v dpkg-divert >/dev/null 2>&1 || return 1
  if [[ -n $ROOT ]]; then
    [[ -f $ROOT/var/lib/dpkg/status ]] || return 1
    DPKG_ROOT_ARGS=(--root "$ROOT")
  fi
  dpkg-query "${DPKG_ROOT_ARGS[@]}" -S "$PLEX_DIR/Plex Transcoder" >/dev/null 2>&1
}
diverted() {
  command -v dpkg-divert >/dev/null 2>&1 || return 1
  [[ -z $ROOT || -f $ROOT/var/lib/dpkg/status ]] || return 1
  [[ -n $ROOT ]] && DPKG_ROOT_ARGS=(--root "$ROOT")
  dpkg-divert "${DPKG_ROOT_ARGS[@]}" --listpackage "$PLEX_DIR/Plex Transcoder" 2>/dev/null | grep -qx downshiftarr
}

# A diverted original upgraded by dpkg: check it against the package's own md5sums.
dpkg_verified() {
  local pkg sums want got
  # `dpkg-query -S` lists the diversion first ("diversion by downshiftarr from: …").
  pkg=$(dpkg-query "${DPKG_ROOT_ARGS[@]}" -S "$PLEX_DIR/Plex Transcoder" 2>/dev/null | grep -v '^diversion by' | cut -d: -f1 | head -n1)
  [[ -n $pkg ]] || return 1
  sums="$ROOT/var/lib/dpkg/info/$pkg.md5sums"
  [[ -f $sums ]] || return 1
  want=$(awk -v f="${PLEX_DIR#/}/Plex Transcoder" '{ line = $0; sub(/^[0-9a-f]+  /, "", line) } line == f { print $1 }' "$sums")
  got=$(md5sum < "$REAL" | cut -d' ' -f1)
  [[ -n $want && $want == "$got" ]]
}

# --- is a transcode running? -----------------------------------------------------------------
transcode_running() {
  local exe
  for exe in /proc/[0-9]*/exe; do
    exe=$(readlink "$exe" 2>/dev/null) || continue
    [[ $exe == "$TRANSCODER" || $exe == "$REAL" || $exe == "$TRANSCODER (deleted)" ]] && return 0
  done
  return 1
}

# --- does a transcoder run? --------------------------------------------------------------------
check_runs() {
  local what=$1 path=$2
  if ((DRY_RUN)); then say "would check that $what runs: $path -version"; return; fi
  if ! LD_LIBRARY_PATH="$ROOT$PLEX_DIR/lib:$ROOT$PLEX_DIR" "$path" -version >/dev/null 2>&1 &&
     ! LD_LIBRARY_PATH="$ROOT$PLEX_DIR/lib:$ROOT$PLEX_DIR" "$path" -hide_banner -filters >/dev/null 2>&1; then
    die "$what does not run: $path"
  fi
  say "$what runs: $path"
}

# --- directories: every one we create is remembered, so uninstall can remove exactly those -----
CREATED=()
mkdir_tracked() {
  local d p parts i
  for d in "$@"; do
    parts=(); p=$d
    while [[ ! -d $p ]]; do parts+=("$p"); p=$(dirname "$p"); done
    for ((i = ${#parts[@]} - 1; i >= 0; i--)); do
      run mkdir "${parts[i]}"
      CREATED+=("${parts[i]#"$ROOT"}")
    done
  done
}
remember_created() {
  ((${#CREATED[@]})) || return 0
  ((DRY_RUN)) && return 0
  { [[ -f $STATE_DIR/created-dirs ]] && cat "$STATE_DIR/created-dirs"; printf '%s\n' "${CREATED[@]}"; } | sort -u > "$STATE_DIR/created-dirs.new"
  mv -f "$STATE_DIR/created-dirs.new" "$STATE_DIR/created-dirs"
}
remove_created() {
  [[ -f $STATE_DIR/created-dirs ]] || return 0
  local d
  # Deepest first; only empty ones (config and state stay unless --purge).
  # `if`, not `[[ … ]] && …`: under `set -e` a loop whose last test is false (a directory
  # --purge already removed) would fail the whole uninstall, silently.
  while IFS= read -r d; do
    if [[ -n $d && -d $ROOT$d ]]; then run rmdir --ignore-fail-on-non-empty "$ROOT$d"; fi
  done < <(awk '{ print length, $0 }' "$STATE_DIR/created-dirs" | sort -rn | cut -d' ' -f2-)
}

# --- atomic install of a file: temp name in the same directory, then rename ----------------
atomic_install() {
  local src=$1 dst=$2 mode=$3 tmp
  tmp="$(dirname "$dst")/.$(basename "$dst").downshiftarr-tmp.$$"
  run cp "$src" "$tmp"
  run chmod "$mode" "$tmp"
  run mv -f "$tmp" "$dst"
}

record_checksum() {
  mkdir_tracked "$STATE_DIR"
  if ((DRY_RUN)); then say "would record the original's checksum in $STATE_DIR/original.sha256"; return; fi
  (cd "$(dirname "$REAL")" && sha256sum "$(basename "$REAL")") > "$STATE_DIR/original.sha256"
}

# --- binaries --------------------------------------------------------------------------------
find_bins() {
  if [[ -z $BIN_DIR ]]; then
    local checkout; checkout=$(cd "$SRC_DIR/.." && pwd)
    if [[ -x $checkout/target/release/downshiftarr ]]; then BIN_DIR=$checkout/target/release
    else BIN_DIR=$SRC_DIR
    fi
  fi
  BIN_CLI="$BIN_DIR/downshiftarr"
  BIN_SHIM="$BIN_DIR/downshiftarr-shim"
  # The musl build starts measurably faster (README, "Speed"): prefer it when it was built.
  local musl; musl="$(dirname "$BIN_DIR")/x86_64-unknown-linux-musl/release/downshiftarr-shim"
  [[ -x $musl ]] && BIN_SHIM=$musl
  [[ -x $BIN_CLI ]] || die "no downshiftarr binary in $BIN_DIR (build with: cargo build --release --workspace, or give --bin-dir)"
  [[ -x $BIN_SHIM ]] || die "no downshiftarr-shim binary in $BIN_DIR"
  grep -qaF "$MARKER" "$BIN_SHIM" || die "$BIN_SHIM is not a downshiftarr shim (no marker)"
  say "binaries from $BIN_DIR (shim: $BIN_SHIM)"
}

systemd_here() { ((NO_SYSTEMD == 0)) && [[ -d /run/systemd/system ]] && command -v systemctl >/dev/null 2>&1; }

install_all() {
  find_bins
  local kind real_kind
  kind=$(kind_of "$TRANSCODER")
  real_kind=$(kind_of "$REAL")
  say "transcoder path holds: $kind; original beside it: $real_kind"
  if [[ $kind != shim ]] && ((FORCE == 0)) && transcode_running; then
    die "a transcode is running; try again when nobody is watching, or use --force"
  fi

  case "$kind" in
    genuine)
      check_runs "the Plex transcoder" "$TRANSCODER"
      if dpkg_owned && ! diverted; then
        say "dpkg owns the transcoder: diverting it to ${REAL#"$ROOT"}"
        [[ $real_kind == missing ]] || run rm -f "$REAL"   # a stale original from an old install
        run dpkg-divert "${DPKG_ROOT_ARGS[@]}" --package downshiftarr --rename --divert "$PLEX_DIR/Plex Transcoder$REAL_SUFFIX" "$PLEX_DIR/Plex Transcoder"
      else
        [[ $real_kind == missing ]] || say "replacing the stale original with the binary Plex installed"
        run mv -f "$TRANSCODER" "$REAL"
      fi
      record_checksum
      ;;
    shim)
      [[ $real_kind == genuine ]] || die "the shim is installed but the original ${REAL#"$ROOT"} is $real_kind; reinstall Plex, then run this again"
      ;;
    missing)
      [[ $real_kind == genuine ]] || die "no Plex Transcoder at ${TRANSCODER#"$ROOT"} nor beside it"
      [[ -f $STATE_DIR/original.sha256 ]] || record_checksum
      ;;
    other) die "${TRANSCODER#"$ROOT"} is neither a Plex binary nor our shim; not touching it" ;;
  esac

  if [[ $kind == shim ]] && cmp -s "$BIN_SHIM" "$TRANSCODER"; then
    say "the shim is already current"
  else
    say "installing the shim at ${TRANSCODER#"$ROOT"}"
    atomic_install "$BIN_SHIM" "$TRANSCODER" 0755
  fi

  mkdir_tracked "$LIB_DIR" "$(dirname "$BIN_LINK")" "$STATE_DIR" "$LOG_DIR"
  for pair in "$BIN_CLI:$LIB_DIR/downshiftarr" "$BIN_SHIM:$LIB_DIR/downshiftarr-shim" "$SRC_DIR/install.sh:$LIB_DIR/install.sh"; do
    local src=${pair%%:*} dst=${pair#*:}
    [[ -e $src ]] || continue
    cmp -s "$src" "$dst" 2>/dev/null || atomic_install "$src" "$dst" 0755
  done
  [[ -L $BIN_LINK ]] || run ln -sfn /usr/lib/downshiftarr/downshiftarr "$BIN_LINK"

  local group=""
  getent group plex >/dev/null 2>&1 && group=plex
  if [[ ! -e $ETC_DIR/config.json ]]; then
    say "writing the default configuration to ${ETC_DIR#"$ROOT"}/config.json"
    mkdir_tracked "$ETC_DIR"
    run install -m 0640 /dev/null "$ETC_DIR/config.json"
    if ((DRY_RUN == 0)); then
      printf '{\n  "shim": {},\n  "daemon": { "plex_dir": "%s" }\n}\n' "$PLEX_DIR" > "$ETC_DIR/config.json"
    fi
    [[ -n $group && -z $ROOT ]] && run chgrp "$group" "$ETC_DIR/config.json"
  fi
  if [[ -n $group && -z $ROOT ]]; then
    run chgrp "$group" "$LOG_DIR"
    run chmod 0775 "$LOG_DIR"
  fi

  local unit_src="$SRC_DIR/systemd/downshiftarr.service"
  [[ -f $unit_src ]] || unit_src="$SRC_DIR/downshiftarr.service"
  if [[ -f $unit_src ]]; then
    mkdir_tracked "$(dirname "$UNIT")"
    if ((DRY_RUN)); then say "would install the systemd unit at ${UNIT#"$ROOT"}"
    else
      sed "s|/usr/lib/plexmediaserver|$PLEX_DIR|g" "$unit_src" > "$UNIT.tmp.$$"
      if cmp -s "$UNIT.tmp.$$" "$UNIT" 2>/dev/null; then rm -f "$UNIT.tmp.$$"; else mv -f "$UNIT.tmp.$$" "$UNIT"; fi
    fi
  fi
  if systemd_here; then
    getent passwd downshiftarr >/dev/null || run useradd --system --no-create-home --home-dir /var/lib/downshiftarr \
      --shell /usr/sbin/nologin ${group:+--gid "$group"} downshiftarr
    run systemctl daemon-reload
    run systemctl enable --now downshiftarr.service
  else
    say "no systemd here: start 'downshiftarr daemon' yourself (or use the container overlay)"
  fi

  remember_created
  check_runs "the transcoder chain (shim → original)" "$TRANSCODER"
  say "installed"
}

uninstall_all() {
  if systemd_here; then
    run systemctl disable --now downshiftarr.service || true
  fi
  local kind real_kind
  kind=$(kind_of "$TRANSCODER")
  real_kind=$(kind_of "$REAL")
  if [[ $kind == genuine ]]; then
    say "the transcoder path already holds a Plex binary: nothing to restore"
    [[ $real_kind == missing ]] || run rm -f "$REAL"
    ! diverted || run dpkg-divert "${DPKG_ROOT_ARGS[@]}" --package downshiftarr --remove "$PLEX_DIR/Plex Transcoder"
  elif [[ $real_kind == genuine ]]; then
    if [[ -f $STATE_DIR/original.sha256 ]] && ((DRY_RUN == 0)); then
      if (cd "$(dirname "$REAL")" && sha256sum --status -c "$STATE_DIR/original.sha256"); then
        say "the original matches the checksum recorded at install time"
      elif diverted && dpkg_verified; then
        say "the original was upgraded by dpkg since install and matches the package's checksum"
      else
        die "the original ${REAL#"$ROOT"} does not match the checksum recorded at install time; not restoring it"
      fi
    fi
    [[ $kind == missing ]] || run rm -f "$TRANSCODER"
    if diverted; then
      run dpkg-divert "${DPKG_ROOT_ARGS[@]}" --package downshiftarr --rename --remove "$PLEX_DIR/Plex Transcoder"
    else
      run mv -f "$REAL" "$TRANSCODER"
    fi
    say "restored the original Plex Transcoder"
  else
    die "no original transcoder beside the shim (${REAL#"$ROOT"} is $real_kind); reinstall Plex Media Server"
  fi
  run rm -f "$LIB_DIR/downshiftarr" "$LIB_DIR/downshiftarr-shim" "$LIB_DIR/install.sh" "$BIN_LINK" "$UNIT"
  if systemd_here; then run systemctl daemon-reload; fi
  local created=""
  [[ -f $STATE_DIR/created-dirs ]] && created=$(cat "$STATE_DIR/created-dirs")
  if ((PURGE)); then
    say "purging configuration, state and logs"
    run rm -rf "$ETC_DIR" "$LOG_DIR"
    run rm -f "$STATE_DIR/original.sha256" "$STATE_DIR/daemon.lock"
    if systemd_here && getent passwd downshiftarr >/dev/null; then run userdel downshiftarr || true; fi
  else
    say "kept ${ETC_DIR#"$ROOT"} and ${STATE_DIR#"$ROOT"} (--purge removes them)"
  fi
  remove_created
  if ((PURGE)) && ((DRY_RUN == 0)); then
    rm -f "$STATE_DIR/created-dirs"
    if [[ -d $STATE_DIR ]]; then rmdir --ignore-fail-on-non-empty "$STATE_DIR"; fi
    # The state directory held the list: remove what it named, now that it is gone too.
    while IFS= read -r d; do
      if [[ -n $d && -d $ROOT$d ]]; then rmdir --ignore-fail-on-non-empty "$ROOT$d"; fi
    done < <(printf '%s\n' "$created" | awk 'NF { print length, $0 }' | sort -rn | cut -d' ' -f2-)
  fi
  say "uninstalled"
}

if ((UNINSTALL)); then uninstall_all; else install_all; fi
