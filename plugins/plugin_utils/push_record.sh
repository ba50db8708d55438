# shellcheck shell=sh
# push_files' record step (plugin_utils/push.py loads this file into the finalize command; the
# record rule: push.py's module docstring). Comments and blank lines are dropped when loaded.
#
# xr DIR, with one "<sha256>:<name>" line per file of DIR on its stdin. A marker in DIR (its
# filesystem's clock and timestamp granularity), written after the files, is rewritten until its
# ctime differs from every file's; then each file's record is its sha256 and its stat line,
# written to $R$DIR/<name>. Nothing here fails the command: a record not written only costs
# hashing at the next read.
# Set by the caller: R (the records' directory), SF (the stat format, push.STAT_FMT), XT (the
# temporaries the command's EXIT trap removes; the marker is added to it).
xr() {
  d=$1 T='' m=$(mktemp "$1/.xcm-tmp.XXXXXX") || return 0
  XT="$XT $m"
  set -- "$m"
  while IFS= read -r f; do
    T="$T$f
"
    set -- "$@" "$d/${f#*:}"
  done
  mkdir -p "$R$d" || return 0
  n=0
  while :; do
    S=$(stat -c "$SF" "$@") || return 0
    c='' x=0
    while IFS= read -r l; do
      r=${l#*|}; r=${r%%|*}
      if [ -z "$c" ]; then c=$r; elif [ "$r" = "$c" ]; then x=1; fi
    done <<XCM_EOF
$S
XCM_EOF
    [ $x = 1 ] || break
    n=$((n + 1)); [ $n -lt 200 ] || return 0
    # a rewrite alone moves the marker's ctime on kernels that give an inode whose time was
    # just read a fine-grained one at its next change; others need the coarse clock to tick
    [ $n -eq 1 ] || sleep 0.01 2>/dev/null || sleep 1
    echo $n >"$m"
  done
  set --
  while IFS= read -r f; do set -- "$@" "$f"; done <<XCM_EOF
$T
XCM_EOF
  x=1
  while IFS= read -r l; do
    [ $x = 0 ] || { x=0; continue; }
    printf "%s %s\n" "${1%%:*}" "${l#*|}" >"$R$d/${1#*:}"; shift
  done <<XCM_EOF
$S
XCM_EOF
}
