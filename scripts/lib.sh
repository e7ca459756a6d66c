# Sourced by the scripts in this folder (not run on its own).

# need_root "$@": carries on when already root. Otherwise runs the calling
# script again as root through sudo, keeping PATH (so cargo is found) and
# RUSTUP_HOME (so cargo finds its toolchain); without sudo, stops with a clear
# message.
need_root() {
  [ "$(id -u)" = 0 ] && return 0
  if command -v sudo >/dev/null 2>&1; then
    local keep=("PATH=$PATH") rustup_home=${RUSTUP_HOME:-${HOME:-}/.rustup}
    [ -d "$rustup_home" ] && keep+=("RUSTUP_HOME=$rustup_home")
    exec sudo env "${keep[@]}" bash "$0" "$@"
  fi
  echo "$(basename "$0"): must run as root, and sudo is not installed: run it as root" >&2
  exit 1
}
