# Prompt naming the node, like `[node1] (local) root@10.0.1.5 ~ $`.
pwd_node_ip() {
    ip -4 -o addr show dev eth0 2>/dev/null | awk '{split($4, a, "/"); print a[1]; exit}'
}
if [ -n "${BASH_VERSION:-}" ]; then
    PS1='[\h] (local) \u@$(pwd_node_ip) \w \$ '
    [ -r /usr/share/bash-completion/bash_completion ] && . /usr/share/bash-completion/bash_completion
fi
