"""tools/gpu/prune_fatbin.py on a small ELF64 built here: other architectures' cubins become zeros, the kept
architecture's bytes and every entry header stay."""
from __future__ import annotations

import importlib.util
import struct
from pathlib import Path

import pytest

spec = importlib.util.spec_from_file_location("prune_fatbin", Path(__file__).parents[1] / "tools" / "gpu" / "prune_fatbin.py")
prune_fatbin = importlib.util.module_from_spec(spec)
spec.loader.exec_module(prune_fatbin)

ENTRY_HEADER = 64


def fatbin(entries: list[tuple[int, bytes]]) -> bytes:
    """One fatbin: header + entries (kind 2 = ELF cubin, arch at offset 28 of each entry header)."""
    body = b""
    for arch, payload in entries:
        header = bytearray(ENTRY_HEADER)
        struct.pack_into("<HHIQ", header, 0, 2, 0, ENTRY_HEADER, len(payload))
        struct.pack_into("<I", header, 28, arch)
        body += bytes(header) + payload
    return struct.pack("<IHHQ", prune_fatbin.FATBIN_MAGIC, 1, 16, len(body)) + body


def elf_with_section(content: bytes) -> bytearray:
    names = b"\0.nv_fatbin\0.shstrtab\0"
    data_off = 64
    names_off = data_off + len(content)
    shoff = names_off + len(names)
    out = bytearray(b"\x7fELF" + bytes([2, 1, 1]) + bytes(57))
    struct.pack_into("<Q", out, 0x28, shoff)
    struct.pack_into("<HHH", out, 0x3A, 64, 3, 2)
    out += content + names
    out += bytes(64)  # null section
    out += struct.pack("<IIQQQQ", 1, 1, 0, 0, data_off, len(content)) + bytes(24)
    out += struct.pack("<IIQQQQ", 12, 3, 0, 0, names_off, len(names)) + bytes(24)
    return out


def test_prune_zeroes_other_architectures_only(tmp_path):
    sm80, sm90, sm120 = b"\x11" * 40, b"\x22" * 24, b"\x33" * 8
    content = fatbin([(80, sm80), (90, sm90)]) + bytes(8) + fatbin([(120, sm120)])
    data = elf_with_section(content)
    original = bytes(data)
    zeroed = prune_fatbin.prune(data, {90})
    assert zeroed == {80: 40, 120: 8} and len(data) == len(original)
    assert sm90 in data and sm80 not in data and sm120 not in data
    assert data.count(struct.pack("<I", prune_fatbin.FATBIN_MAGIC)) == 2  # headers kept
    path = tmp_path / "lib.so"
    path.write_bytes(original)
    assert prune_fatbin.main([str(path), "90"]) == 0 and path.read_bytes() == bytes(data)
    with pytest.raises(ValueError, match="ELF64"):
        prune_fatbin.prune(bytearray(b"not an elf" * 10), {90})
    with pytest.raises(ValueError, match="no .nv_fatbin"):
        prune_fatbin.fatbin_section(bytes(elf_with_section(b"")).replace(b".nv_fatbin", b".nv_other!"))
