#!/usr/bin/env python3
"""Zero the CUDA machine code a shared library carries for GPU architectures other than the kept ones.

Transfer-size helper for ``tools/gpu/gpu_runtime_check.sh``: onnxruntime-gpu's CUDA provider holds cubins for
sm_75 ... sm_120 (219 MB); a lent H100/H200 runs only the sm_90 ones, and the zeroed entries compress to nothing,
so the provider fits the lent machine's 64 MiB transfer in two calls instead of four. Entry headers stay, so the
CUDA driver still sees every entry and picks the sm_90 cubin as it would in the unmodified file; only the payloads
of the other architectures become zeros. Never use the output anywhere but a measurement on the kept architecture.

    python tools/gpu/prune_fatbin.py LIB.so 90        # in place; prints the bytes zeroed per architecture
"""
from __future__ import annotations

import struct
import sys
from collections import Counter

FATBIN_MAGIC = 0xBA55ED50


def fatbin_section(data: bytes) -> tuple[int, int]:
    """(offset, size) of the ELF64 section ``.nv_fatbin``."""
    if data[:4] != b"\x7fELF" or data[4] != 2:
        raise ValueError("not an ELF64 file")
    shoff = struct.unpack_from("<Q", data, 0x28)[0]
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)
    headers = [struct.unpack_from("<IIQQQQ", data, shoff + i * shentsize) for i in range(shnum)]
    names_at = headers[shstrndx][4]
    for name_off, _type, _flags, _addr, offset, size in headers:
        start = names_at + name_off
        if data[start:data.index(b"\0", start)] == b".nv_fatbin":
            return offset, size
    raise ValueError("no .nv_fatbin section")


def prune(data: bytearray, keep: set[int]) -> Counter:
    """Zero every fatbin entry's payload whose SM architecture is not in ``keep``; bytes zeroed per arch."""
    offset, size = fatbin_section(data)
    zeroed: Counter = Counter()
    p, end = offset, offset + size
    while p < end:
        magic, _version, header_size, fat_size = struct.unpack_from("<IHHQ", data, p)
        if magic != FATBIN_MAGIC:  # fatbins are 8-byte aligned inside the section
            p += 8
            continue
        q, q_end = p + header_size, p + header_size + fat_size
        while q < q_end:
            _kind, _unused, entry_header, payload = struct.unpack_from("<HHIQ", data, q)
            arch = struct.unpack_from("<I", data, q + 28)[0]
            if arch not in keep:
                data[q + entry_header:q + entry_header + payload] = bytes(payload)
                zeroed[arch] += payload
            q += entry_header + payload
        p = q_end
    return zeroed


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    path, keep = argv[0], {int(a) for a in argv[1].split(",")}
    with open(path, "rb") as f:
        data = bytearray(f.read())
    zeroed = prune(data, keep)
    with open(path, "wb") as f:
        f.write(data)
    print({f"sm_{a}": f"{n / 1e6:.1f} MB" for a, n in sorted(zeroed.items())})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
