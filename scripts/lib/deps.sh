# shellcheck shell=bash
# Installs what a fresh Debian machine lacks for scripts/test. Source, don't run.
# Needs scripts/lib/common.sh.

DEPS_POLICY_RC_CREATED=""

# Is the Debian package installed? (Only used where no command identifies it.)
deb_installed() {
  [[ $(dpkg-query -W -f='${Status}' "$1" 2>/dev/null) == "install ok installed" ]]
}

has_pip() {
  command -v pip3 >/dev/null 2>&1 && return 0
  [[ -x /usr/bin/python3 ]] && /usr/bin/python3 -m pip --version >/dev/null 2>&1
}

# Print the Debian packages that are missing, one per line.
deps_missing_packages() {
  deb_installed build-essential || echo build-essential
  deb_installed ca-certificates || echo ca-certificates
  have_cmds pkg-config || echo pkg-config
  have_cmds cmake || echo cmake
  pg_bindir >/dev/null || echo postgresql
  have_cmds psql pg_isready || echo postgresql-client
  have_cmds mariadbd mariadb-install-db || echo mariadb-server
  have_cmds mariadb mariadb-admin || echo mariadb-client
  have_cmds redis-server || echo redis-server
  have_cmds redis-cli || echo redis-tools
  [[ -x /usr/sbin/sshd ]] || echo openssh-server
  have_cmds ssh ssh-keygen ssh-keyscan || echo openssh-client
  have_cmds curl || echo curl
  have_cmds jq || echo jq
  have_cmds ps pgrep || echo procps
  has_pip || echo python3-pip
  have_cmds python3 || echo python3
  # The independent audit verifier (crates/hallpass-cli/tests/independent_verifier).
  python3 -c 'import cryptography' >/dev/null 2>&1 || echo python3-cryptography
  # The web UI's browser test (crates/hallpass-cli/tests/web): Debian's
  # Chromium, driven by Playwright under Node.js (npm installs its packages).
  [[ -x /usr/bin/chromium ]] || echo chromium
  have_cmds node || echo nodejs
  have_cmds npm || echo npm
}

# Keep apt from starting the system-wide daemons it installs (postgresql,
# mariadb, redis, ssh): we start our own throwaway instances, and a fresh
# sshd listening on every interface is not something a test run should leave
# behind. Only done when no policy-rc.d exists yet; removed again afterwards.
deps_block_service_start() {
  local f=/usr/sbin/policy-rc.d
  [[ -e $f ]] && return 0
  printf '#!/bin/sh\n# Temporary, created by hallpass scripts/test.\nexit 101\n' >"$f"
  chmod 0755 "$f"
  DEPS_POLICY_RC_CREATED=$f
}

deps_unblock_service_start() {
  if [[ -n $DEPS_POLICY_RC_CREATED ]]; then
    rm -f -- "$DEPS_POLICY_RC_CREATED"
    DEPS_POLICY_RC_CREATED=""
  fi
}

deps_install_system() {
  if ! command -v dpkg-query >/dev/null 2>&1 || ! command -v apt-get >/dev/null 2>&1; then
    warn "not a Debian-like system (no apt-get/dpkg-query): not installing anything"
    return 0
  fi

  local missing=()
  mapfile -t missing < <(deps_missing_packages)
  if ((${#missing[@]} == 0)); then
    info "system packages: all present"
    return 0
  fi

  local sudo=()
  if ((EUID != 0)); then
    command -v sudo >/dev/null 2>&1 ||
      die "missing packages (${missing[*]}) and not root / no sudo: install them first"
    sudo=(sudo)
  fi

  info "installing: ${missing[*]}"
  local log rc=0
  log=$(mktemp -t hallpass-apt.XXXXXX)
  if ((EUID == 0)); then
    deps_block_service_start
  fi
  {
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
      apt-get -qq -o DPkg::Lock::Timeout=300 update &&
      "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get -qq -y -o DPkg::Lock::Timeout=300 -o Dpkg::Use-Pty=0 \
        install --no-install-recommends "${missing[@]}"
  } >"$log" 2>&1 || rc=$?
  deps_unblock_service_start
  if ((rc != 0)); then
    cat "$log" >&2
    rm -f -- "$log"
    die "apt-get install failed (exit $rc) for: ${missing[*]}"
  fi
  rm -f -- "$log"

  local still=()
  mapfile -t still < <(deps_missing_packages)
  ((${#still[@]} == 0)) || die "still missing after apt-get install: ${still[*]}"
}

deps_install_rust_tools() {
  if ! command -v cargo >/dev/null 2>&1 && [[ -r ${CARGO_HOME:-$HOME/.cargo}/env ]]; then
    # shellcheck disable=SC1091
    . "${CARGO_HOME:-$HOME/.cargo}/env"
  fi
  command -v cargo >/dev/null 2>&1 ||
    die "cargo not found: install Rust with rustup (https://rustup.rs) first"

  if ! cargo fmt --version >/dev/null 2>&1 || ! cargo clippy --version >/dev/null 2>&1; then
    command -v rustup >/dev/null 2>&1 || die "rustfmt/clippy missing and no rustup to add them"
    info "adding rustup components: rustfmt clippy"
    rustup component add rustfmt clippy
  fi

  if ! cargo nextest --version >/dev/null 2>&1; then
    info "installing cargo-nextest (cargo install --locked; takes a few minutes)"
    cargo install cargo-nextest --locked --quiet
  fi
  info "rust: $(cargo --version), $(cargo nextest --version 2>/dev/null | head -n1)"
}

# deps_install_venv HOME REQUIREMENTS LABEL BIN...: a Python virtual
# environment at HOME with the packages pinned in REQUIREMENTS, of its own so
# it neither needs nor disturbs the system's packages. Installed when missing,
# reinstalled when the pins change or one of the BINs is missing. Sets
# DEPS_VENV_BIN to the environment's bin directory. Returns 1 (after saying
# why) when it cannot be installed; the caller decides whether that may be
# skipped.
deps_install_venv() {
  local home=$1 requirements=$2 label=$3
  shift 3
  local stamp="$home/requirements.sha256" want py log bin present=1
  want=$(sha256sum "$requirements" | cut -d' ' -f1)
  DEPS_VENV_BIN=$home/bin
  for bin in "$@"; do
    [[ -x $DEPS_VENV_BIN/$bin ]] || present=0
  done
  if ((present)) && [[ $(cat "$stamp" 2>/dev/null) == "$want" ]]; then
    return 0
  fi
  py=$(command -v python3 || true)
  if [[ -z $py ]]; then
    warn "python3 not found: cannot install $label"
    return 1
  fi
  if ! "$py" -c 'import ensurepip, venv' 2>/dev/null && ((EUID == 0)) && command -v apt-get >/dev/null 2>&1; then
    # Debian splits venv's pip bootstrap into its own package.
    info "installing python3-venv"
    env DEBIAN_FRONTEND=noninteractive apt-get -qq -o DPkg::Lock::Timeout=300 update >/dev/null 2>&1 || true
    env DEBIAN_FRONTEND=noninteractive apt-get -qq -y -o DPkg::Lock::Timeout=300 \
      install --no-install-recommends python3-venv >/dev/null 2>&1 || true
  fi
  info "installing $label into $home (pip; takes a minute)"
  log=$(mktemp -t hallpass-pip.XXXXXX)
  rm -rf -- "$home"
  if ! { "$py" -m venv "$home" && "$home/bin/python" -m pip install -q --disable-pip-version-check \
    --no-input -r "$requirements"; } >"$log" 2>&1; then
    cat "$log" >&2
    rm -f -- "$log"
    warn "installing $label failed"
    return 1
  fi
  rm -f -- "$log"
  printf '%s\n' "$want" >"$stamp"
}

# The Python tools of scripts/lib/openapi-check (openapi-spec-validator,
# schemathesis), at the versions in openapi-check-requirements.txt. Sets
# OPENAPI_TOOLS to their bin directory; returns 1 when they cannot be
# installed.
deps_install_openapi_tools() {
  local lib_dir
  lib_dir=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)
  deps_install_venv "${HALLPASS_OPENAPI_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/hallpass/openapi-tools}" \
    "$lib_dir/openapi-check-requirements.txt" "the OpenAPI tools" schemathesis openapi-spec-validator || return 1
  OPENAPI_TOOLS=$DEPS_VENV_BIN
  info "openapi tools: $("$OPENAPI_TOOLS/schemathesis" --version)"
}

# moto (a local STS and IAM, started by scripts/lib/services.sh) and boto3
# for the AWS provider's tests, and aiosmtpd for the email notifier's
# end-to-end tests, at the versions in aws-test-requirements.txt. Sets
# AWS_TOOLS to their bin directory (moto_server, and the python that imports
# boto3 and aiosmtpd); returns 1 when they cannot be installed.
deps_install_aws_tools() {
  local lib_dir
  lib_dir=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)
  deps_install_venv "${HALLPASS_AWS_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/hallpass/aws-tools}" \
    "$lib_dir/aws-test-requirements.txt" "moto and boto3" moto_server python || return 1
  AWS_TOOLS=$DEPS_VENV_BIN
  info "aws test tools: $("$AWS_TOOLS/python" -c 'import boto3, moto; print("moto", moto.__version__, "boto3", boto3.__version__)')"
}

# Terraform >= 1.10 on the PATH, for the provider's acceptance tests
# (crates/terraform-provider-hallpass/tests), which drive the real binary.
# Not installed here: Debian's archive has no Terraform. Under CI=true a
# missing or older Terraform is an error; otherwise a loud warning, and those
# tests skip with a note.
deps_check_terraform() {
  local version="" major minor problem=""
  if command -v terraform >/dev/null 2>&1; then
    # CHECKPOINT_DISABLE: no call home for an upgrade check.
    version=$(CHECKPOINT_DISABLE=1 terraform version -json 2>/dev/null |
      sed -n 's/^ *"terraform_version": *"\([0-9][0-9.]*\)".*/\1/p')
    IFS=. read -r major minor _ <<<"$version"
    if [[ -z $version ]]; then
      problem="terraform is on the PATH but did not tell its version"
    elif ((major < 1 || (major == 1 && minor < 10))); then
      problem="terraform $version is on the PATH; the provider's acceptance tests need >= 1.10"
    fi
  else
    problem="terraform is not on the PATH; the provider's acceptance tests need Terraform >= 1.10"
  fi
  if [[ -z $problem ]]; then
    info "terraform: $version"
  elif is_ci; then
    die "CI=true: $problem"
  else
    loud_warning "$problem: they will be skipped"
  fi
}

# The packages of the web UI's browser test in DIR
# (crates/hallpass-cli/tests/web: oidc-provider and playwright-core, at the
# versions in its package-lock.json), installed with `npm ci` when
# node_modules is missing or older than the lock file. No browser is
# downloaded: the test drives Debian's Chromium. Needs Node.js >= 20 (Debian
# 12's own nodejs is 18: take Debian 13's, or NodeSource's). Returns 1 (after
# saying why) when they cannot be installed; the caller decides whether
# that may be skipped.
deps_install_web_test_tools() {
  local dir=$1 major log
  local stamp="$dir/node_modules/.package-lock.json"
  if ! have_cmds node npm; then
    warn "node or npm not found: cannot install the web test's packages"
    return 1
  fi
  major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
  if ! [[ $major =~ ^[0-9]+$ ]] || ((major < 20)); then
    warn "Node.js $(node --version 2>/dev/null) is too old for the web test: it needs >= 20 (Debian 12 ships 18; use Debian 13's nodejs or NodeSource's)"
    return 1
  fi
  if [[ -f $stamp && ! $dir/package-lock.json -nt $stamp ]]; then
    info "web test packages: installed (node $(node --version))"
    return 0
  fi
  info "installing the web test's packages (npm ci in $dir)"
  log=$(mktemp -t hallpass-npm.XXXXXX)
  if ! (cd "$dir" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund) >"$log" 2>&1; then
    cat "$log" >&2
    rm -f -- "$log"
    warn "npm ci failed in $dir"
    return 1
  fi
  rm -f -- "$log"
  # npm ci leaves the lock file as it was; mark the install as newer.
  touch "$stamp"
  info "web test packages: installed (node $(node --version))"
}
