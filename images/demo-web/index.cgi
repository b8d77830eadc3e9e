#!/bin/sh
# GET / when UPSTREAM=host:port is set: ask the upstream, answer with its reply.
if body=$(fetch "http://$UPSTREAM/" 2>&1); then
    printf 'Content-Type: text/plain\r\n\r\n%s %s -> %s\n' "${MESSAGE:-hello from}" "$(hostname)" "$body"
else
    printf 'Status: 502 Bad Gateway\r\nContent-Type: text/plain\r\n\r\n%s %s -> %s: %s\n' \
        "${MESSAGE:-hello from}" "$(hostname)" "$UPSTREAM" "$body"
fi
