# Shared by the benchmark scripts that start servers on fixed local ports.
#
#   port_open P        # whether something listens on 127.0.0.1:P
#   wait_port_free P   # waits (at most 10 s) until nothing does

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port_free() {
    local i
    for ((i = 0; i < 100; i++)); do
        port_open "$1" || return 0
        sleep 0.1
    done
    echo "port $1 is still in use" >&2
    return 1
}
