#!/bin/sh
# Assemble the watcher image's whole root filesystem in $1 from this Debian system (the Containerfile's `rootfs`
# stage, debian:bookworm-slim with python3 and tzdata installed and the venv at /opt/coordinator): Debian's Python,
# its standard library, the shared libraries that Python, its extension modules and the venv's binary wheels load
# (found with ldd, so nothing is guessed and nothing unused ships), the time zones, the CA bundle, the copyright files
# of every package a file came from, and a passwd/group naming the non-root user 65532. The result has no shell, no
# package manager and no compiler: the way distroless images are made from Debian's packages.
set -eu
root=$1
# dev, proc, sys and run: empty mount points that runtimes (and tests/scenario/test_watcher_image.py) mount over.
mkdir -p "$root"/usr/bin "$root"/usr/lib "$root"/usr/share/doc "$root"/etc/ssl/certs "$root"/tmp "$root"/opt \
    "$root"/dev "$root"/proc "$root"/sys "$root"/run
chmod 1777 "$root"/tmp
# usrmerge, as on Debian 12: /lib, /lib64, /bin, /sbin are links into /usr (the loader's path is /lib64/...).
for d in lib lib64 bin sbin; do mkdir -p "$root/usr/$d"; ln -s "usr/$d" "$root/$d"; done

copy() {  # copy a file or tree to the same path under $root (through /usr, never through the /lib link)
    src=$(readlink -f "$1"); dest="$root$(readlink -f "$(dirname "$1")")/$(basename "$1")"
    mkdir -p "$(dirname "$dest")"
    cp -a "$src" "$dest"
    printf '%s\n%s\n' "$1" "$src" >> /tmp/copied  # dpkg may know a library by either path (usrmerge)
}

copy /usr/bin/python3.11
ln -s python3.11 "$root"/usr/bin/python3
# The standard library minus what a service never imports: tests, IDLE, tkinter, 2to3, ensurepip's wheels, pydoc's
# topic data and the test extension modules (about 4 MB).
copy /usr/lib/python3.11
for d in test idlelib tkinter turtledemo lib2to3 ensurepip pydoc_data; do rm -rf "$root/usr/lib/python3.11/$d"; done
# python3-dev's static library and build files (the build stage compiles the package's C with them): not run time
rm -rf "$root"/usr/lib/python3.11/config-3.11-*
rm -f "$root"/usr/lib/python3.11/lib-dynload/_test*.so "$root"/usr/lib/python3.11/lib-dynload/xx*.so
cp -a /opt/coordinator "$root"/opt/coordinator
echo /opt/coordinator >> /tmp/copied

# Every shared library the interpreter and any extension module loads, with the loader itself.
find /usr/bin/python3.11 /usr/lib/python3.11/lib-dynload /opt/coordinator -type f \( -name '*.so*' -o -name python3.11 \) \
    -exec ldd {} + 2>/dev/null | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\/.*ld-linux/ {print $1}' \
    | sort -u | while read -r lib; do copy "$lib"; done
copy /lib64/ld-linux-x86-64.so.2 2>/dev/null || true

copy /usr/share/zoneinfo
cp /etc/ssl/certs/ca-certificates.crt "$root"/etc/ssl/certs/ca-certificates.crt
echo /etc/ssl/certs/ca-certificates.crt >> /tmp/copied
for f in /etc/os-release /usr/lib/os-release /etc/debian_version /etc/ld.so.conf; do [ -e "$f" ] && copy "$f"; done
mkdir -p "$root"/etc/ld.so.conf.d && cp -a /etc/ld.so.conf.d/. "$root"/etc/ld.so.conf.d/
printf 'root:x:0:0:root:/root:/usr/sbin/nologin\nnonroot:x:65532:65532:nonroot:/nonexistent:/usr/sbin/nologin\n' \
    > "$root"/etc/passwd
printf 'root:x:0:\nnonroot:x:65532:\n' > "$root"/etc/group
printf 'hosts: files dns\n' > "$root"/etc/nsswitch.conf
# The Debian packages that supplied a file: `dpkg -S` answers "pkg1:arch, pkg2: /path" for each copied path (several
# packages share a folder such as /usr/lib/python3.11), one name a line here, without the path and the ":arch".
sort -u /tmp/copied | while read -r path; do dpkg -S "$path" 2>/dev/null || true; done | grep -v '^diversion by' \
    | sed 's/: [^:]*$//' | tr ',' '\n' | sed 's/^ *//; s/:.*$//' | grep -v '^$' | sort -u > /tmp/owners
# License texts of every one of those packages.
while read -r pkg; do
    [ -f "/usr/share/doc/$pkg/copyright" ] || continue
    mkdir -p "$root/usr/share/doc/$pkg" && cp "/usr/share/doc/$pkg/copyright" "$root/usr/share/doc/$pkg/"
done < /tmp/owners
# Their dpkg status paragraphs, one file per package where scanners (trivy, grype, syft) look for distroless' dpkg
# database, and the SBOM's Debian packages come from (devtools/sbom.py).
mkdir -p "$root"/var/lib/dpkg/status.d
while read -r pkg; do
    dpkg-query -s "$pkg" > "$root/var/lib/dpkg/status.d/$pkg" 2>/dev/null || rm -f "$root/var/lib/dpkg/status.d/$pkg"
done < /tmp/owners
