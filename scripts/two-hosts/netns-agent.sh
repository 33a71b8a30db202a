#!/bin/sh
# Open MPI's remote-launch agent for scripts/two-hosts.sh, in place of ssh: called as `AGENT [ssh options] HOST
# COMMAND...`, it runs COMMAND in the network namespace that plays HOST.
while [ $# -gt 0 ]; do case "$1" in -*) shift ;; *) break ;; esac; done
host=$1
shift
case $host in
  10.231.0.1) ns=cnclip-h1 ;;
  10.231.0.2) ns=cnclip-h2 ;;
  *) echo "netns-agent: no namespace plays host $host" >&2; exit 1 ;;
esac
exec ip netns exec "$ns" sh -c "$*"
