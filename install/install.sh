#!/usr/bin/env bash
# downshiftarr installer: puts the shim in place of Plex Transcoder, keeps the real one beside
# it, and keeps protecting across Plex updates. `install.sh --help` lists the options.
#
# - Finds Plex in /usr/lib/plexmediaserver, /usr/lib64/plexmediaserver or Synology's
#   /volume1/@appstore/PlexMediaServer (or --plex-dir), and says what it found.
# - On dpkg systems the real binary is moved aside with dpkg-divert, so later plexmediaserver
#   packages install their new transcoder under the diverted name; elsewhere it is renamed.
# - Our shim is recognised by a marker string inside it, never by a hash: re-running is a
#   no-op, an upgrade replaces only the shim, a genuine Plex binary found at the transcoder
#   path is always treated as the new original.
# - Prefers the musl shim (it adds ~0.14 ms per transcoder start, the glibc one ~0.40 ms);
#   run from a source tree it builds it when cargo and the musl target are there.
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
# What was done, or under --dry-run what would be: `tell "installed X" "would install X"`.
tell() { if ((DRY_RUN)); then say "$2"; else say "$1"; fi; }
die() { printf 'downshiftarr: error: %s\n' "$*" >&2; exit 1; }
usage() {
  cat <<'EOF'
usage: install.sh [--plex-dir DIR] [--bin-dir DIR] [--root DIR] [--no-systemd] [--force] [--dry-run]
       install.sh --uninstall [--purge] [--plex-dir DIR] [--root DIR] [--no-systemd] [--dry-run]

Puts the downshiftarr shim in place of Plex Transcoder, keeps the real transcoder beside it
and keeps protecting it across Plex updates. Run it as root; running it again changes nothing.

  --plex-dir DIR  where Plex Media Server is installed (default: the first of
                  /usr/lib/plexmediaserver, /usr/lib64/plexmediaserver and
                  /volume1/@appstore/PlexMediaServer that holds a Plex Transcoder)
  --bin-dir DIR   where the built downshiftarr and downshiftarr-shim are (default: this
                  checkout's target/release, else the installer's own directory)
  --root DIR      work on the directory tree DIR instead of /; never touches the host's
                  systemd or packages (implies --no-systemd)
  --no-systemd    neither create the service user nor enable and start the systemd
                  service (containers, or when you start `downshiftarr daemon` yourself)
  --force         swap the transcoder even while a transcode is running
  --dry-run       print every step and change nothing
  --uninstall     restore the original Plex Transcoder byte for byte and remove the shim,
                  the binaries and the service; keeps the configuration and state
  --purge         with --uninstall: also remove /etc/downshiftarr, /var/lib/downshiftarr
                  and /var/log/downshiftarr
  -h, --help      show this help
EOF
}

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
    -h|--help) usage; exit 0 ;;
    *) printf 'downshiftarr: error: unknown option %s\n\n' "$1" >&2; usage >&2; exit 2 ;;
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
# Where the written config tells the daemon to read the owner's Plex token (a path on the target).
TOKEN_FILE=/etc/downshiftarr/plex-token
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
MUSL_TARGET=x86_64-unknown-linux-musl
MUSL_BUILD="cargo build --release -p downshiftarr-shim --target $MUSL_TARGET"
# The musl shim adds ~0.14 ms to every transcoder start, the glibc static build ~0.40 ms
# (glibc's static start-up is that expensive): prefer the musl one, and say what the owner gives
# up without it. Only a glibc static binary carries glibc's tunables variable name.
is_glibc() { grep -qaF GLIBC_TUNABLES "$1"; }

# From a source tree whose toolchain has the musl target: build the musl shim.
build_musl_shim() {
  local checkout=$1 sysroot
  [[ -f $checkout/Cargo.toml && -d $checkout/shim ]] || return 1
  command -v cargo >/dev/null 2>&1 && command -v rustc >/dev/null 2>&1 || return 1
  sysroot=$(cd "$checkout" && rustc --print sysroot 2>/dev/null) || return 1
  [[ -d $sysroot/lib/rustlib/$MUSL_TARGET ]] || return 1
  # Never leave root-owned build files in someone else's checkout.
  [[ -O $checkout/Cargo.toml ]] || return 1
  if ((DRY_RUN)); then say "would build the musl shim in $checkout: $MUSL_BUILD"; return 1; fi
  say "building the musl shim in $checkout: $MUSL_BUILD"
  (cd "$checkout" && cargo build --release -p downshiftarr-shim --target "$MUSL_TARGET") && return 0
  say "the musl build failed (its output is above)"
  return 1
}

find_bins() {
  local checkout looked musl explicit=0
  checkout=$(cd "$SRC_DIR/.." && pwd)
  if [[ -n $BIN_DIR ]]; then
    looked=$BIN_DIR explicit=1
  else
    looked="$checkout/target/release and $SRC_DIR"
    if [[ -x $checkout/target/release/downshiftarr ]]; then BIN_DIR=$checkout/target/release
    else BIN_DIR=$SRC_DIR
    fi
  fi
  BIN_CLI="$BIN_DIR/downshiftarr"
  [[ -x $BIN_CLI ]] || die "no downshiftarr binary in $looked; build it in the source tree with: cargo build --release --workspace (or give --bin-dir DIR)"
  BIN_SHIM="$BIN_DIR/downshiftarr-shim"
  # Beside target/release (or a --bin-dir laid out like it): the musl build.
  musl="$(dirname "$BIN_DIR")/$MUSL_TARGET/release/downshiftarr-shim"
  # Built only for binaries found on their own, never under a --bin-dir the caller chose.
  if [[ ! -x $musl && $explicit == 0 && $BIN_DIR == "$checkout/target/release" ]]; then
    build_musl_shim "$checkout" || true
  fi
  [[ -x $musl ]] && BIN_SHIM=$musl
  [[ -x $BIN_SHIM ]] || die "no downshiftarr-shim binary in $(dirname "$musl") nor $BIN_DIR; build it in the source tree with: $MUSL_BUILD (after: rustup target add $MUSL_TARGET), or without the musl target: cargo build --release -p downshiftarr-shim"
  grep -qaF "$MARKER" "$BIN_SHIM" || die "$BIN_SHIM is not a downshiftarr shim (no marker)"
  say "binaries from $BIN_DIR (shim: $BIN_SHIM)"
  if is_glibc "$BIN_SHIM"; then
    say "note: this is the glibc shim: it adds about 0.40 ms to every transcoder start, the musl shim about 0.14 ms. For the musl one, in the source tree: rustup target add $MUSL_TARGET && $MUSL_BUILD, then run this again"
  fi
}

systemd_here() { ((NO_SYSTEMD == 0)) && [[ -d /run/systemd/system ]] && command -v systemctl >/dev/null 2>&1; }

# --- what the owner does next ------------------------------------------------------------------
# The shim protects on its own; the daemon needs the owner's Plex token to index the library and
# stop refused sessions. Configured = PLEX_TOKEN is set, the token file has something in it, or
# the owner's own config sets a token or another token file.
token_configured() {
  local cfg=$ETC_DIR/config.json
  # A container's environment (the init step runs with it) may carry the token.
  [[ -n ${PLEX_TOKEN:-} ]] && return 0
  [[ -s $ROOT$TOKEN_FILE ]] && return 0
  [[ -f $cfg ]] || return 1
  grep -Eq '"token"[[:space:]]*:[[:space:]]*"[^"]' "$cfg" && return 0
  grep -Eo '"token_file"[[:space:]]*:[[:space:]]*"[^"]+"' "$cfg" | grep -vqF "\"$TOKEN_FILE\""
}

# 32 random bytes, hex: the webhook token and the ops API key.
random_token() { od -An -tx1 -N32 /dev/urandom | tr -d ' \n'; }

# An existing config without daemon.webhook_token / daemon.api_key gets them, generated, inside
# its "daemon" object (or a new one); the rest of the file is kept byte for byte. A file whose
# shape this cannot edit safely is left alone with a note.
add_http_tokens() {
  local cfg=$1 add="" tmp
  # Both keys came together: a file with the webhook token has had its chance at both (other
  # sections have an "api_key" too, so that key alone says nothing).
  grep -q '"webhook_token"' "$cfg" && return 0
  add="\"webhook_token\": \"$(random_token)\", \"api_key\": \"$(random_token)\", "
  local daemons
  daemons=$(grep -c '"daemon"[[:space:]]*:[[:space:]]*{' "$cfg" || true)
  if ((DRY_RUN)); then say "would add daemon.webhook_token / daemon.api_key to ${cfg#"$ROOT"}"; return 0; fi
  tmp="$cfg.tmp.$$"
  if [[ $daemons == 1 ]]; then
    sed "s|\(\"daemon\"[[:space:]]*:[[:space:]]*{\)|\1 ${add%, }${add:+,}|" "$cfg" > "$tmp"
    # An empty daemon object must not end with a comma.
    sed -i 's|\("daemon"[[:space:]]*:[[:space:]]*{[^}]*\),[[:space:]]*}|\1 }|' "$tmp"
  elif [[ $daemons == 0 ]] && [[ $(head -c1 "$cfg") == "{" ]]; then
    sed "1s|^{|{ \"daemon\": { ${add%, } },|" "$cfg" > "$tmp"
    # A config that was `{}`: no comma before the closing brace.
    sed -i '1s|},[[:space:]]*}|} }|' "$tmp"
  else
    say "note: add \"webhook_token\" and \"api_key\" (e.g. $(random_token)) to the daemon section of ${cfg#"$ROOT"} for the Plex webhook and the ops API"
    return 0
  fi
  chmod --reference="$cfg" "$tmp" 2>/dev/null || true
  chown --reference="$cfg" "$tmp" 2>/dev/null || true
  mv -f "$tmp" "$cfg"
  say "added a generated daemon.webhook_token and daemon.api_key to ${cfg#"$ROOT"}"
}

# The URL to paste into Plex (Settings → Webhooks), from the config's token and listen address.
webhook_hint() {
  local cfg=$ETC_DIR/config.json token listen
  token=$(grep -o '"webhook_token"[[:space:]]*:[[:space:]]*"[^"]*"' "$cfg" 2>/dev/null | sed 's/.*"\([^"]*\)"$/\1/' | head -n1 || true)
  [[ -n $token ]] || return 0
  listen=$(grep -o '"http_listen"[[:space:]]*:[[:space:]]*"[^"]*"' "$cfg" 2>/dev/null | sed 's/.*"\([^"]*\)"$/\1/' | head -n1 || true)
  listen=${listen:-127.0.0.1:9877}
  [[ -n $listen ]] || return 0
  say "Plex webhook (Plex Web → Settings → Webhooks → Add Webhook): http://${listen/0.0.0.0/127.0.0.1}/webhook/plex/$token"
}

next_step() {
  local check="downshiftarr check-config" grp=""
  systemd_here && check="sudo systemctl restart downshiftarr && $check"
  if token_configured; then
    say "next: $check"
    return 0
  fi
  if getent group plex >/dev/null 2>&1; then grp=plex
  elif getent group downshiftarr >/dev/null 2>&1; then grp=downshiftarr
  fi
  say "next: give the daemon your Plex token; the shim protects without it, but the daemon needs it to index the library and stop refused sessions (Plex Web: an item's ⋯ menu → Get Info → View XML; the token is the X-Plex-Token= value in the address):"
  printf "    sudo sh -c 'umask 027; cat > %s'%s    # paste the token, Enter, Ctrl-D\n" "$TOKEN_FILE" "${grp:+ && sudo chgrp $grp $TOKEN_FILE}"
  if ! grep -qF "\"$TOKEN_FILE\"" "$ETC_DIR/config.json" 2>/dev/null; then
    printf '    and in %s set: "plex": { "token_file": "%s" }\n' "${ETC_DIR#"$ROOT"}/config.json" "$TOKEN_FILE"
  fi
  if systemd_here; then printf '    %s\n' "$check"
  else printf '    then restart downshiftarr daemon and run: %s\n' "$check"
  fi
}

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
        tell "dpkg owns the transcoder: diverting it to ${REAL#"$ROOT"}" "dpkg owns the transcoder: would divert it to ${REAL#"$ROOT"}"
        [[ $real_kind == missing ]] || run rm -f "$REAL"   # a stale original from an old install
        run dpkg-divert "${DPKG_ROOT_ARGS[@]}" --package downshiftarr --rename --divert "$PLEX_DIR/Plex Transcoder$REAL_SUFFIX" "$PLEX_DIR/Plex Transcoder"
      else
        [[ $real_kind == missing ]] || tell "replacing the stale original with the binary Plex installed" "would replace the stale original with the binary Plex installed"
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
    tell "installing the shim at ${TRANSCODER#"$ROOT"}" "would install the shim at ${TRANSCODER#"$ROOT"}"
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
    tell "writing the default configuration to ${ETC_DIR#"$ROOT"}/config.json" "would write the default configuration to ${ETC_DIR#"$ROOT"}/config.json"
    mkdir_tracked "$ETC_DIR"
    run install -m 0640 /dev/null "$ETC_DIR/config.json"
    if ((DRY_RUN == 0)); then
      printf '{\n  "shim": {},\n  "plex": { "url": "http://127.0.0.1:32400", "token_file": "%s" },\n  "daemon": { "plex_dir": "%s", "webhook_token": "%s", "api_key": "%s" }\n}\n' \
        "$TOKEN_FILE" "$PLEX_DIR" "$(random_token)" "$(random_token)" > "$ETC_DIR/config.json"
    fi
    [[ -n $group && -z $ROOT ]] && run chgrp "$group" "$ETC_DIR/config.json"
  else
    add_http_tokens "$ETC_DIR/config.json"
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
  if ((DRY_RUN)); then
    say "dry run: nothing was changed; the steps above would install downshiftarr"
  else
    say "installed"
    webhook_hint
    next_step
  fi
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
    # Verified in a dry run too (it only reads), so the dry run shows a refusal to come.
    if [[ -f $STATE_DIR/original.sha256 ]]; then
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
    tell "restored the original Plex Transcoder" "would restore the original Plex Transcoder"
  else
    die "no original transcoder beside the shim (${REAL#"$ROOT"} is $real_kind); reinstall Plex Media Server"
  fi
  run rm -f "$LIB_DIR/downshiftarr" "$LIB_DIR/downshiftarr-shim" "$LIB_DIR/install.sh" "$BIN_LINK" "$UNIT"
  if systemd_here; then run systemctl daemon-reload; fi
  local created=""
  [[ -f $STATE_DIR/created-dirs ]] && created=$(cat "$STATE_DIR/created-dirs")
  if ((PURGE)); then
    tell "purging configuration, state and logs" "would purge configuration, state and logs"
    run rm -rf "$ETC_DIR" "$LOG_DIR"
    run rm -f "$STATE_DIR/original.sha256" "$STATE_DIR/daemon.lock"
    if systemd_here && getent passwd downshiftarr >/dev/null; then run userdel downshiftarr || true; fi
  else
    tell "kept ${ETC_DIR#"$ROOT"} and ${STATE_DIR#"$ROOT"} (--purge removes them)" "would keep ${ETC_DIR#"$ROOT"} and ${STATE_DIR#"$ROOT"} (--purge removes them)"
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
  if ((DRY_RUN)); then
    say "dry run: nothing was changed; the steps above would uninstall downshiftarr"
  else
    say "uninstalled"
  fi
}

if ((UNINSTALL)); then uninstall_all; else install_all; fi
