#!/usr/bin/env bash
# Installs what `make test` needs beyond Go, and fails saying what to
# install when it cannot:
#   - the e2e OpenID Provider's Node modules (npm ci in e2e/provider), when
#     node_modules is missing or older than package-lock.json;
#   - Debian packages (APT_PACKAGES below), with apt-get when running as root.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the e2e suite needs: "package:command that proves it is there".
APT_PACKAGES=(
	chromium:/usr/bin/chromium
	nginx:/usr/sbin/nginx
	openssl:/usr/bin/openssl
	python3:/usr/bin/python3
	redis-server:/usr/bin/redis-server
	redis-sentinel:/usr/bin/redis-sentinel
)

# Node.js (>= 20.19, for oidc-provider 9) and npm.
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
	echo "test-deps: node and npm are required: install Node.js >= 20.19 (Debian: apt-get install nodejs npm)" >&2
	exit 1
fi
if ! node -e 'const [a,b]=process.versions.node.split(".").map(Number); process.exit(a>20||(a===20&&b>=19)?0:1)'; then
	echo "test-deps: node $(node --version) is too old: oidc-provider 9 needs Node.js >= 20.19" >&2
	exit 1
fi

# The provider's modules, pinned by the committed package-lock.json.
provider=e2e/provider
# Checked by a file inside, not the folder: an interrupted or emptied
# node_modules must not pass for installed.
if [[ ! -f $provider/node_modules/oidc-provider/package.json || $provider/package-lock.json -nt $provider/node_modules ]]; then
	echo "test-deps: npm ci in $provider"
	(cd "$provider" && npm ci --no-audit --no-fund)
	touch "$provider/node_modules"
fi

# Debian packages.
missing=()
for entry in "${APT_PACKAGES[@]}"; do
	pkg=${entry%%:*}
	path=${entry#*:}
	[[ -x $path ]] || missing+=("$pkg")
done
if ((${#missing[@]} > 0)); then
	if [[ $(id -u) -ne 0 ]]; then
		echo "test-deps: missing ${missing[*]}: run as root, or install with: sudo apt-get install -y ${missing[*]}" >&2
		exit 1
	fi
	echo "test-deps: apt-get install ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	# The tests start nginx and redis-server themselves, on 127.0.0.1 ports
	# of their own; keep the packages from starting system-wide daemons
	# (nginx on :80, redis on :6379) while installing.
	if [[ ! -e /usr/sbin/policy-rc.d ]]; then
		printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
		chmod +x /usr/sbin/policy-rc.d
		trap 'rm -f /usr/sbin/policy-rc.d' EXIT
	fi
	apt-get update -qq
	apt-get install -y -qq "${missing[@]}"
fi

# Go programs the e2e suite runs as real peers (Pebble, Jaeger, Caddy). Each
# is pinned by a module of its own under e2e/tools/NAME (a `tool` directive
# and its go.sum), so its dependencies never mix with ours, and is built from
# the Go module proxy into .cache/bin/NAME, again when its go.sum changes.
for dir in e2e/tools/*/; do
	[[ -f $dir/go.mod ]] || continue
	name=$(basename "$dir")
	bin=.cache/bin/$name
	pkg=$(awk '$1 == "tool" && NF == 2 { print $2; exit }' "$dir/go.mod")
	if [[ -z $pkg ]]; then
		echo "test-deps: $dir/go.mod has no tool directive" >&2
		exit 1
	fi
	if [[ ! -x $bin || $dir/go.sum -nt $bin ]]; then
		echo "test-deps: go build $pkg (pinned by $dir/go.mod) into $bin"
		mkdir -p .cache/bin
		(cd "$dir" && go build -o "$OLDPWD/$bin" "$pkg")
	fi
done
