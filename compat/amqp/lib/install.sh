# shellcheck shell=bash disable=SC2154 # sourced by ../run, which sets compat_dir and friends
# Installs the AMQP compat clients, each only when missing (sourced by ../run).
# Invariant: a repeat run with everything present does no network access and takes seconds;
# `apt-get update` runs only when a Debian package is missing.

compat_cache="$HOME/.cache/tributary-compat"
venv_dir="$compat_cache/amqp-venv"
java_out="$compat_cache/amqp-java"
java_classpath="/usr/share/java/amqp-client.jar:/usr/share/java/slf4j-api.jar:/usr/share/java/slf4j-nop.jar"

install_debian() {
    local missing=()
    command -v amqp-publish >/dev/null 2>&1 || missing+=(amqp-tools)
    [[ -f /usr/share/java/amqp-client.jar ]] || missing+=(librabbitmq-client-java)
    [[ -f /usr/share/java/slf4j-nop.jar ]] || missing+=(libslf4j-java)
    command -v javac >/dev/null 2>&1 || missing+=(openjdk-17-jdk-headless)
    command -v npm >/dev/null 2>&1 || missing+=(npm)
    python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || missing+=(python3-venv)
    if ((${#missing[@]})); then
        echo "apt: installing ${missing[*]}"
        export DEBIAN_FRONTEND=noninteractive
        timeout 300 apt-get update -qq
        timeout 600 apt-get install -y -qq --no-install-recommends "${missing[@]}" </dev/null >/dev/null
    fi
}

# The venv is rebuilt when requirements.txt changes (its copy inside the venv is the stamp).
install_python() {
    local requirements="$compat_dir/python/requirements.txt"
    if [[ -x "$venv_dir/bin/python" ]] && cmp -s "$requirements" "$venv_dir/requirements.txt"; then
        return
    fi
    echo "pip: installing $(grep -cv '^#' "$requirements") pinned clients into $venv_dir"
    rm -rf "$venv_dir"
    mkdir -p "$compat_cache"
    python3 -m venv "$venv_dir"
    timeout 600 "$venv_dir/bin/pip" install -q --disable-pip-version-check -r "$requirements"
    cp "$requirements" "$venv_dir/requirements.txt"
}

# node_modules is reinstalled when package-lock.json changes (npm's own copy is the stamp).
install_node() {
    local node_dir="$compat_dir/node"
    if [[ -f "$node_dir/node_modules/.package-lock.json" ]] \
        && [[ "$node_dir/node_modules/.package-lock.json" -nt "$node_dir/package-lock.json" ]]; then
        return
    fi
    echo "npm: installing from package-lock.json"
    (cd "$node_dir" && timeout 300 npm ci --no-audit --no-fund --loglevel=error)
}

# The class is recompiled when the source changes (a copy beside the class is the stamp).
install_java() {
    local source="$compat_dir/java/AmqpCompat.java"
    if [[ -f "$java_out/AmqpCompat.class" ]] && cmp -s "$source" "$java_out/AmqpCompat.java"; then
        return
    fi
    echo "javac: compiling AmqpCompat.java"
    rm -rf "$java_out"
    mkdir -p "$java_out"
    timeout 300 javac -cp "$java_classpath" -d "$java_out" "$source"
    cp "$source" "$java_out/AmqpCompat.java"
}

install_clients() {
    install_debian
    install_python
    install_node
    install_java
}
