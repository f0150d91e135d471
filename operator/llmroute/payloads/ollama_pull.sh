#!/bin/sh
# The command of a route's managed Ollama container: serve Ollama, then make sure every
# declared model is on the volume before the pod turns Ready.
#
#   LLMROUTE_OLLAMA_MODELS         the declared models (spec.ollama.models), separated by spaces
#   LLMROUTE_OLLAMA_READY_FILE     written once every model is present; the readiness probe
#                                  checks for it (default /tmp/llmroute/ready)
#   LLMROUTE_OLLAMA_START_TIMEOUT  seconds to wait for the server to answer (default 120)
#   LLMROUTE_TERMINATION_LOG       where a failure is explained, when the file exists (default
#                                  /dev/termination-log: Kubernetes shows it in the pod status)
#
# A model already on the volume is not pulled again, so a restart needs no registry. A model
# that cannot be pulled stops the container with an error: the pod restarts, never becomes
# Ready, and the reason is in its status. POSIX sh: the image's /bin/sh is dash.

set -u
set -f # model names are words, never patterns

ready_file=${LLMROUTE_OLLAMA_READY_FILE:-/tmp/llmroute/ready}
termination_log=${LLMROUTE_TERMINATION_LOG:-/dev/termination-log}
start_timeout=${LLMROUTE_OLLAMA_START_TIMEOUT:-120}
server=
pull=
stopping=

log() {
    echo "llmroute-ollama: $*"
}

# Waits for the server to exit. `wait` returns early when a trapped signal arrives, so it is
# repeated until the process is gone; the server's exit status is left in $server_status.
wait_server() {
    server_status=0
    while :; do
        wait "$server"
        server_status=$?
        kill -0 "$server" 2>/dev/null || break
    done
}

stop_server() {
    if [ -n "$server" ]; then
        kill -TERM "$server" 2>/dev/null
        wait_server
    fi
}

fail() {
    log "error: $*" >&2
    rm -f "$ready_file"
    # The kubelet creates this file; what is written to it becomes the container's
    # lastState.terminated.message, where `kubectl describe` and the operator find it.
    if [ -f "$termination_log" ]; then
        printf 'llmroute-ollama: %s\n' "$*" >"$termination_log" 2>/dev/null || :
    fi
    stop_server
    exit 1
}

# SIGTERM (the pod is stopping): end a pull in progress and the server, then exit cleanly.
finish() {
    rm -f "$ready_file"
    stop_server
    exit 0
}

on_signal() {
    stopping=1
    [ -n "$pull" ] && kill -TERM "$pull" 2>/dev/null
    [ -n "$server" ] && kill -TERM "$server" 2>/dev/null
}
trap on_signal TERM INT

# A marker left by an earlier start of this container (an emptyDir outlives a container
# restart) must not make the pod Ready before the models are checked again.
rm -f "$ready_file"
mkdir -p "$(dirname "$ready_file")" || fail "cannot create the directory of $ready_file"
pull_errors="$(dirname "$ready_file")/pull-errors"

ollama serve &
server=$!

waited=0
until ollama list >/dev/null 2>&1; do
    [ -n "$stopping" ] && finish
    kill -0 "$server" 2>/dev/null || {
        wait_server
        fail "ollama serve exited with status $server_status before it answered"
    }
    [ "$waited" -ge "$start_timeout" ] && fail "ollama serve did not answer within ${start_timeout}s"
    sleep 1
    waited=$((waited + 1))
done

for model in ${LLMROUTE_OLLAMA_MODELS:-}; do
    if ollama show "$model" >/dev/null 2>&1; then
        log "$model is on the volume"
        continue
    fi
    log "pulling $model"
    # In the background, so that SIGTERM ends a long download at once.
    # Its errors go to a file too, so that the failure names Ollama's own reason.
    ollama pull "$model" 2>"$pull_errors" &
    pull=$!
    wait "$pull"
    status=$?
    [ -n "$stopping" ] && finish
    pull=
    if [ "$status" -ne 0 ]; then
        cat "$pull_errors" >&2
        reason=$(sed -n 's/^.*Error: //p' "$pull_errors" | tail -n 1)
        fail "cannot pull $model: ${reason:-ollama pull exited with status $status}" \
            "(check the name in spec.ollama.models and the pod's access to the registry)"
    fi
    ollama show "$model" >/dev/null 2>&1 || fail "$model is not present after pulling it"
    log "pulled $model"
done

: >"$ready_file" || fail "cannot write $ready_file"
log "every declared model is present: ready"

wait_server
[ -n "$stopping" ] && finish
fail "ollama serve exited with status $server_status"
