# shellcheck shell=bash
# Shared by tests/artifacts/* (sourced, bash): the cache layout and the go command's
# environment. Go builds come from Go modules fetched by the go command (module proxy),
# never from a committed or fetched snapshot.

XCM_CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/xcluster-multus
XCM_GO=$XCM_CACHE/go
# shellcheck disable=SC2034  # used by build-all
XCM_ARCHIVES=$XCM_CACHE/archives

GO=${GO:-go}
if ! command -v "$GO" >/dev/null 2>&1 && [ -x /usr/local/go/bin/go ]; then
	GO=/usr/local/go/bin/go
fi

# One module cache and one build cache under the project cache, shared by every build.
# -modcacherw: the module cache can be removed with rm -rf.
export GOMODCACHE=$XCM_GO/modcache
export GOCACHE=$XCM_GO/build-cache
export GOFLAGS="-modcacherw -buildvcs=false"
export GOTOOLCHAIN=local
export CGO_ENABLED=0

log() { printf '%s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# module_json MOD@VER: the go command's JSON for a module version (downloads it once).
module_json() {
	local out
	out=$("$GO" mod download -json "$1") || {
		log "$out"
		die "the go command cannot fetch $1 (is it served by \$GOPROXY=$("$GO" env GOPROXY)?)"
	}
	printf '%s\n' "$out"
}

# json_field NAME < json: a string field of the go command's JSON (Dir, Time, Hash, ...).
json_field() {
	sed -n "s/^[[:space:]]*\"$1\": \"\(.*\)\",\{0,1\}$/\1/p" | head -n 1
}

# module_copy MOD@VER DEST: the module's source as the go command downloads it, writable.
module_copy() {
	local dir
	dir=$(module_json "$1" | json_field Dir)
	[ -d "$dir" ] || die "no source directory for $1"
	mkdir -p "$2"
	cp -R "$dir"/. "$2"/
	chmod -R u+w "$2"
}

# clone_standin MOD VER DEST: a stand-in for `git clone` of MOD at VER into DEST (missing or
# empty): the module source as the go command downloads it, writable, made a git repository
# with VER as a tag, so a project's own build scripts (which call `git rev-parse`/`git
# describe` under `set -e`) work as in a clone. Module zips keep no file modes, so files
# starting with `#!` are made executable (as upstream has them), and hold only
# vendor/modules.txt of a vendor tree: `go mod vendor` restores the tree a clone has.
clone_standin() {
	local mod=$1 ver=$2 dest=$3 t0
	command -v git >/dev/null || die "git is needed (build scripts call it)"
	if [ -e "$dest" ] && [ -n "$(ls -A "$dest")" ]; then
		die "$dest exists and is not empty"
	fi
	t0=$(now)
	module_copy "$mod@$ver" "$dest"
	(
		cd "$dest" || exit
		find . -type f -exec sh -c \
			'for f; do [ "$(head -c 2 "$f")" != "#!" ] || chmod +x "$f"; done' sh {} +
		if [ -f vendor/modules.txt ]; then
			"$GO" mod vendor
		fi
		export GIT_AUTHOR_NAME=xcluster-multus GIT_AUTHOR_EMAIL=tests@xcluster-multus.invalid
		export GIT_COMMITTER_NAME=$GIT_AUTHOR_NAME GIT_COMMITTER_EMAIL=$GIT_AUTHOR_EMAIL
		export GIT_AUTHOR_DATE=2000-01-01T00:00:00Z GIT_COMMITTER_DATE=2000-01-01T00:00:00Z
		git init -q .
		git add -A
		git -c commit.gpgsign=false commit -q -m "$mod $ver: module source from the go command"
		git -c tag.gpgsign=false tag "$ver"
	)
	log "clone stand-in: $mod@$ver in $dest ($(since "$t0") s)"
}
