# Sourced by up.sh, down.sh and observe.sh, in the checkout with ROOT set: the folder a relative path
# the user gave is read from (CALLER_DIR), RUN_DIR as an absolute path, and how a hint names `make`.
# make runs the scripts in the checkout, but a relative RUN_DIR (DATA_PATH, DATA_CACHE_DIR) given to
# `make -C <checkout> up` from another folder is that folder's, as for any command typed there: it
# was read from the checkout, so the banner's `RUN_DIR=myrun make down` failed where it was typed,
# and `ls myrun/logs` there found nothing. The Makefile passes that folder as UP_CALLER_DIR; a
# script run by hand reads relative paths from the checkout.
CALLER_DIR=${UP_CALLER_DIR:-$ROOT}
if [[ $CALLER_DIR != /* ]] || ! [ -d "$CALLER_DIR" ]; then CALLER_DIR=$ROOT; fi
export UP_CALLER_DIR=$CALLER_DIR  # observe.sh runs up.sh: the same folder

# from_caller VAR: a relative path in VAR made the caller's, absolute. One that begins with white
# space or '~', or is a URL, is left as given, for the programs' own message about it.
from_caller() {
  local value=${!1:-}
  if [ -n "$value" ] && [[ $value != /* && $value =~ ^[^[:space:]~] && $value != *://* ]]; then
    printf -v "$1" %s "$CALLER_DIR/$value"
  fi
}
RUN_DIR=${RUN_DIR:-$ROOT/.run}
from_caller RUN_DIR

# from another folder, the commands a hint prints name the checkout
MAKE_HERE="make" VENV_BIN=".venv/bin"
if ! [ "$CALLER_DIR" -ef "$ROOT" ]; then
  MAKE_HERE="make -C $(printf %q "$ROOT")" VENV_BIN="$(printf %q "$ROOT")/.venv/bin"
fi
