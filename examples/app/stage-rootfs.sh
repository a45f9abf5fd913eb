#!/bin/sh
# Build stage of the Dockerfile: put into $1 only what /usr/bin/node needs to run server.js
# -- the binary, the shared libraries ldd lists (with their symlinks) and the module tree of
# require('pg') -- plus /etc/passwd, /etc/group and a world-writable /tmp. No shell, no cp.
set -eu
root=$1
mkdir -p "$root/usr/bin" "$root/usr/lib" "$root/usr/lib64" "$root/etc" "$root/app"
mkdir -m 1777 "$root/tmp" # a runtime's tmpfs on /tmp takes this mode
# Debian's merged /usr: the ELF interpreter is /lib64/ld-linux-x86-64.so.2.
ln -s usr/lib "$root/lib"
ln -s usr/lib64 "$root/lib64"

# Copy a path at its canonical place, then the file its symlink points to, hop by hop.
copy() {
    path=$(readlink -f "$(dirname "$1")")/$(basename "$1")
    cp -a --parents "$path" "$root"
    if [ -L "$path" ]; then
        target=$(readlink "$path")
        case $target in /*) ;; *) target=$(dirname "$path")/$target ;; esac
        copy "$target"
    fi
}

libs=$(ldd /usr/bin/node | awk '$2 == "=>" { print $3 } $1 ~ /^\// { print $1 }')
for file in /usr/bin/node $libs; do
    copy "$file"
done
# Debian's node loads some builtins (acorn, cjs-module-lexer, undici's fetch) from
# /usr/share/nodejs, at paths compiled into libnode: copy the files named there.
for file in $(grep -aoh '/usr/share/nodejs/[A-Za-z0-9@/._-]*\.js' /usr/bin/node $libs | sort -u); do
    copy "$file"
done

# pg and its dependencies, transitively (not the optional pg-native), where node finds them.
node -e '
const path = require("path");
const { createRequire } = require("module");
const seen = new Set();
function visit(name, from) {
  const found = createRequire(from + "/").resolve.paths(name)
    .map((dir) => path.join(dir, name))
    .find((dir) => require("fs").existsSync(path.join(dir, "package.json")));
  if (!found) throw new Error(`${name} (needed by ${from}) not found`);
  if (seen.has(found)) return;
  seen.add(found);
  const { dependencies = {} } = require(path.join(found, "package.json"));
  for (const dep of Object.keys(dependencies)) visit(dep, found);
}
visit("pg", "/app");
console.log([...seen].join("\n"));
' | while read -r dir; do copy "$dir"; done

printf 'root:x:0:0:root:/root:/sbin/nologin\napp:x:10001:10001:fast-note:/nonexistent:/sbin/nologin\n' \
    > "$root/etc/passwd"
printf 'root:x:0:\napp:x:10001:\n' > "$root/etc/group"
printf 'hosts: files dns\n' > "$root/etc/nsswitch.conf"
