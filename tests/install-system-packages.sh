#!/usr/bin/env bash
# System programs some tests drive for real: Redis (the head's optional control-store
# backend) and headless Chromium with its driver (the dashboard's browser tests).
# Installs Debian's packages only when one is missing; a machine that has them is untouched.
set -euo pipefail
needed=()
command -v redis-server >/dev/null || needed+=(redis-server)
command -v chromium >/dev/null || needed+=(chromium)
command -v chromedriver >/dev/null || needed+=(chromium-driver)
[ ${#needed[@]} -eq 0 ] && exit 0
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
$sudo apt-get update -q >/dev/null
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${needed[@]}" >/dev/null
